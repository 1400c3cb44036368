# End to end, issue 25: a device of an instance (instance_id) under micropython with the
# virtual module and the local cloud. The module connects to the instance's hosts, not to
# {pk}.iot-as-mqtt.{region}: the auth server {instanceId}.auth.iothub.aliyuncs.com (the
# "http" flow), which names {instanceId}.mqtt.iothub.aliyuncs.com as the MQTT server, and an
# Air780E verifies both names against the local cloud's certificate.
import json

import pytest

from tools.harness.env import SimEnv

IID = "iot-06z00ax1o4qq2ly"
MQTT = IID + ".mqtt.iothub.aliyuncs.com"
AUTH = IID + ".auth.iothub.aliyuncs.com"


@pytest.mark.parametrize("flow", ["mqtt", "http"])
def test_instance_hosts_end_to_end(cloud, flow):
    with SimEnv(flow=flow, cloud=cloud, personality="air780e", cfg={"instance_id": IID, "region": "cn-beijing"}) as env:
        env.firmware.wait_log("link: mqtt -> up", timeout=30)
        _, payload, qos = env.wait_uplink()
        assert qos == 1 and json.loads(payload)["seq"] >= 1
        cmds = env.vm.commands
        assert 'AT+SSLMIPSTART="%s",1883' % MQTT in cmds
        assert not any("iot-as-mqtt" in c or "iot-auth" in c for c in cmds)
        mqtt_tls = [h for h in env.vm.handshakes if h[1] == MQTT]
        assert mqtt_tls and all(verified and error is None for _, _, verified, error in mqtt_tls)
        if flow == "http":
            i = cmds.index("AT+HTTPINIT")
            assert cmds[i + 1] == 'AT+HTTPPARA="URL","https://%s/auth/devicename"' % AUTH
            assert [(h[2], h[3]) for h in env.vm.handshakes if h[1] == AUTH] == [(True, None)]
        else:
            assert not any(c.startswith("AT+HTTP") for c in cmds)
        assert "Traceback" not in env.firmware.text()


def test_local_auth_server_names_the_instance_mqtt_host():
    from tools.cloud.auth import mqtt_resource

    class St:
        resources, region, mqtt_host, mqtt_port = "aliyun", "cn-shanghai", "127.0.0.1", 1
    assert mqtt_resource(St, "pk1", AUTH) == {"host": MQTT, "port": 1883}
    assert mqtt_resource(St, "pk1", AUTH.upper() + ":443") == {"host": MQTT, "port": 1883}
    assert mqtt_resource(St, "pk1", "iot-auth.cn-shanghai.aliyuncs.com") == {
        "host": "pk1.iot-as-mqtt.cn-shanghai.aliyuncs.com", "port": 1883}
    assert mqtt_resource(St, "pk1", "auth.iothub.aliyuncs.com")["host"] == "pk1.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert mqtt_resource(St, "pk1", None)["host"] == "pk1.iot-as-mqtt.cn-shanghai.aliyuncs.com"


def test_https_registration_goes_to_the_instance_auth_host(cloud):
    import time

    dn = "inst-%d" % (time.time() * 1000)
    device = {"productKey": "a1DynRegPk1", "deviceName": dn, "deviceSecret": None}
    cfg = {"product_secret": "DynRegProductSecret00000000000001", "instance_id": IID}
    with SimEnv(cloud=cloud, device=device, cfg=cfg, personality="air780e") as env:
        env.firmware.wait_log("register: registered: DeviceSecret stored in secret.json", timeout=30)
        env.firmware.wait_log("link: mqtt -> up", timeout=30)
        cmds = env.vm.commands
        assert 'AT+HTTPPARA="URL","https://%s/auth/register/device"' % AUTH in cmds
        assert 'AT+SSLMIPSTART="%s",1883' % MQTT in cmds
        assert [(h[2], h[3]) for h in env.vm.handshakes if h[1] == AUTH] == [(True, None)]
