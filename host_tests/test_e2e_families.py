# End to end against every module family the virtual module plays (tools/sim/personality.py):
# the real firmware under micropython, both flows ("mqtt": direct sign, "http": a token from
# the auth server), one short round each (connect, telemetry up, a downlink down). An Air780
# gets the board's CA (the local cloud's, ca.pem on the board's flash) and verifies the
# broker with it; an Air724 cannot and is never sent the file or SSL commands. Then the man
# in the middle: a local cloud whose listeners present a certificate for the same names from
# another CA is refused by every family that verifies, and nothing reaches its broker.
import json
import os
import time

import pytest

from tools.cloud.api import LocalCloud
from tools.harness.env import CA_NAME, SimEnv
from tools.sim import PERSONALITIES

FAMILIES = sorted(PERSONALITIES)                        # air724ug, air780e, air780ep
VERIFYING = [n for n in FAMILIES if PERSONALITIES[n].ssl_contexts]
CA_ON_MODULE = "aliyun-ca.crt"                          # firmware/air72x.py CA_FILE
MQTT_HOST = "a1DemoPk001.iot-as-mqtt.cn-shanghai.aliyuncs.com"
AUTH_HOST = "iot-auth.cn-shanghai.aliyuncs.com"


def first(cmds, prefix):
    return next(i for i, c in enumerate(cmds) if c.startswith(prefix))


@pytest.mark.parametrize("personality", FAMILIES)
@pytest.mark.parametrize("flow", ["mqtt", "http"])
def test_both_flows_on_every_family(cloud, flow, personality):
    # an Air780's SIM answers "busy" (+CME ERROR: 14) to the first two AT+CPIN? after boot
    vm = {"sim_busy": 2} if PERSONALITIES[personality].sim_busy_s else {}
    with SimEnv(flow=flow, cloud=cloud, personality=personality, vm=vm) as env:
        fw = env.firmware
        fw.wait_log("link: mqtt -> up", timeout=40)
        topic, payload, qos = env.wait_uplink()
        assert qos == 1 and json.loads(payload)["seq"] >= 1
        downlink = b'{"cmd":"set","v":"a,b"}\r\nline two'
        mark = len(fw.lines)
        env.cloud.publish(env.topics["get"], downlink, 1)
        line = fw.wait_log("app: downlink", timeout=15, since=mark)
        assert line.endswith("app: downlink %s %r" % (env.topics["get"], downlink.decode()))

        vm = env.vm
        cmds = list(vm.commands)
        assert "AT+CGMR" in cmds
        start = first(cmds, 'AT+SSLMIPSTART="%s",1883' % MQTT_HOST)
        assert not any(c.startswith("AT+MIPSTART") for c in cmds)
        links = [h for h in vm.handshakes if h[1] == MQTT_HOST]
        assert links and all(h[3] is None for h in links)
        if flow == "http":
            assert first(cmds, "AT+HTTPACTION=1") < start
            assert [h[3] for h in vm.handshakes if h[1] == AUTH_HOST] == [None]
        else:
            assert not any(c.startswith("AT+HTTP") for c in cmds)
        if personality in VERIFYING:
            assert cmds[:first(cmds, "AT+CSQ")].count("AT+CPIN?") == 3      # asked again while busy
            with open(os.path.join(env.workdir, CA_NAME), "rb") as f:
                assert vm.files[CA_ON_MODULE] == f.read()                     # the board's CA, whole
            for ctx in (88, 153):
                assert vm.net.ssl[ctx] == {"cacert": CA_ON_MODULE, "seclevel": 1}
            assert first(cmds, 'AT+SSLCFG="seclevel",88,1') < start
            assert all(h[:3] == (88, MQTT_HOST, True) for h in links)          # every link verified
        else:
            assert not any(c.startswith(("AT+FS", "AT+SSLCFG")) for c in cmds)
            assert vm.files == {} and not any(h[2] for h in vm.handshakes)    # encrypted, unverified
        assert "Traceback" not in fw.text()


@pytest.fixture(scope="module")
def mitm():
    """A local cloud whose TLS listeners (broker and HTTPS auth) present a certificate for
    the Aliyun names from a CA the board does not trust."""
    with LocalCloud.demo(mitm=True) as c:
        yield c


@pytest.mark.parametrize("personality", VERIFYING)
def test_a_man_in_the_middle_broker_is_refused(mitm, personality):
    before = mitm.stats()
    with SimEnv(flow="mqtt", cloud=mitm, personality=personality) as env:
        fw, vm = env.firmware, env.vm
        assert vm.wait_command("AT+SSLMIPSTART", timeout=40, count=2)     # refused, tried again
        refused = fw.wait_log(lambda x: " W link: " in x and "AT+SSLMIPSTART" in x, timeout=15)
        assert "CONNECT FAIL" in refused and MQTT_HOST in refused
        deadline = time.monotonic() + 10
        while len(vm.handshakes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(vm.handshakes) >= 2
        for ctx, name, verified, error in vm.handshakes:
            assert (ctx, name, verified) == (88, MQTT_HOST, True)
            assert error.startswith("certificate:")                   # the chain did not verify
        cmds = list(vm.commands)
        assert 'AT+SSLCFG="seclevel",88,1' in cmds
        assert not any(c.startswith(("AT+MIPSTART", "AT+MCONNECT")) for c in cmds)  # no plain TCP, no CONNECT
        assert not any(c.startswith('AT+SSLCFG="seclevel"') and c.endswith(",0") for c in cmds)
        assert vm.connack_code is None
        after = mitm.stats()
        assert after["broker"]["connects"] == before["broker"]["connects"]  # nothing reached the broker
        assert after["broker"]["tls_refused"] - before["broker"]["tls_refused"] >= 2
        assert env.uplinks() == [] and not mitm.online("a1DemoPk001", "demo-device-1")
        assert "Traceback" not in fw.text()


def test_a_man_in_the_middle_auth_server_is_refused(mitm):
    before = mitm.stats()
    with SimEnv(flow="http", cloud=mitm, personality="air780e") as env:
        vm = env.vm
        assert vm.wait_command("AT+HTTPACTION=1", timeout=40)
        deadline = time.monotonic() + 15
        while not any(h[1] == AUTH_HOST for h in vm.handshakes) and time.monotonic() < deadline:
            time.sleep(0.05)
        auth = [h for h in vm.handshakes if h[1] == AUTH_HOST]
        assert auth, "no HTTPS handshake with the auth server"
        assert all(h[:3] == (153, AUTH_HOST, True) and h[3] for h in auth)  # verified: refused
        assert mitm.stats()["auth"]["requests"] == before["auth"]["requests"]


def test_a_man_in_the_middle_registration_server_is_refused(mitm):
    before = mitm.stats()
    device = {"productKey": "a1DynRegPk1", "deviceName": "dyn-mitm-%d" % (time.time() * 1000), "deviceSecret": None}
    with SimEnv(cloud=mitm, device=device, cfg={"product_secret": "DynRegProductSecret00000000000001"},
                personality="air780ep") as env:
        vm = env.vm
        assert vm.wait_command("AT+HTTPACTION=1", timeout=40)
        deadline = time.monotonic() + 15
        while not any(h[1] == AUTH_HOST for h in vm.handshakes) and time.monotonic() < deadline:
            time.sleep(0.05)
        auth = [h for h in vm.handshakes if h[1] == AUTH_HOST]
        assert auth, "no HTTPS handshake with the auth server"
        assert all(h[:3] == (153, AUTH_HOST, True) and h[3] for h in auth)  # verified: refused
        assert mitm.stats()["auth"]["requests"] == before["auth"]["requests"]
        assert not os.path.exists(os.path.join(env.workdir, "secret.json"))
