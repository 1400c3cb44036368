# End to end, issue 25: dynamic registration over MQTT. The real firmware (main.py under
# micropython), the virtual Air724 module and the local cloud's broker, which answers a
# registration CONNECT (tools/cloud/mqttreg.py): "register" for a device added beforehand
# (the DeviceSecret on /ext/register), "mqtt_nwl" without pre-registration (a clientId and
# a deviceToken on /ext/regnwl, then logins with authType=connwl); what comes back stored in
# secret.json and used by every later start; refusals explained and not hammered.
import json
import os
import time

import pytest

from tools.cloud.api import LocalCloud
from tools.harness.env import CA_NAME, SimEnv

PK, PS = "a1DynRegPk1", "DynRegProductSecret00000000000001"
PRE = "pre-registered-1"  # added in the console beforehand, not active yet
PRE_DS = "PreRegisteredSecret0000000000001"


@pytest.fixture(scope="module")
def regcloud():
    products = [{"productKey": PK, "productSecret": PS, "dynamicRegistration": True}]
    with LocalCloud(devices=[{"productKey": PK, "deviceName": PRE, "deviceSecret": PRE_DS}], products=products) as c:
        yield c


def env_for(cloud, dn, route, **cfg):
    c = {"product_secret": PS, "register": route, "backoff_refused_ms": 600000}
    c.update(cfg)
    return SimEnv(cloud=cloud, device={"productKey": PK, "deviceName": dn, "deviceSecret": None}, cfg=c)


def restart(env):
    env.firmware.stop()
    env.vm.power_cycle()
    return len(env.vm.commands), env.run_firmware()


def mconfigs(env, since=0):
    return [c for c in env.vm.commands[since:] if c.startswith("AT+MCONFIG=")]


def cloud_device(cloud, dn):
    return [d for d in cloud.device_list() if d["deviceName"] == dn][0]


def stored(env):
    with open(os.path.join(env.workdir, "secret.json")) as f:
        return json.load(f)


def test_pre_registered_device_gets_its_secret_over_mqtt(regcloud):
    with env_for(regcloud, PRE, "mqtt") as env:
        fw = env.firmware
        fw.wait_log("register: registered: DeviceSecret stored in secret.json", timeout=30)
        fw.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink()
        request = mconfigs(env)[0]
        assert request.startswith('AT+MCONFIG="%s.%s|securemode=2,authType=register,random=' % (PK, PRE))
        assert ',signmethod=hmacsha256|","%s&%s","' % (PRE, PK) in request
        assert not any("register/device" in c for c in env.vm.commands)  # not the HTTPS route
        assert stored(env) == {"product_key": PK, "device_name": PRE, "device_secret": PRE_DS}
        assert cloud_device(regcloud, PRE)["active"]
        assert sorted(os.listdir(env.workdir)) == sorted([CA_NAME, "config.json", "secret.json"])
        assert PRE_DS not in fw.text() and PS not in fw.text() and "Traceback" not in fw.text()
        # the second connect is an ordinary login with the secret
        assert "|securemode=2,signmethod=hmacsha256|" in mconfigs(env)[1]

        mark, fw = restart(env)  # later starts use the stored secret: no registration
        fw.wait_log("link: mqtt -> up", timeout=30)
        assert "register:" not in fw.text()
        assert not any("authType=" in c for c in mconfigs(env, mark))

        os.remove(os.path.join(env.workdir, "secret.json"))  # lost: the platform will not register it again
        mark, fw = restart(env)
        line = fw.wait_log("the platform refused the registration", timeout=30)
        assert "not active already" in line and "copy its DeviceSecret from the console" in line
        fw.wait_log("register: next registration attempt in 600 s", timeout=10)
        time.sleep(2)
        assert len([c for c in mconfigs(env, mark) if "authType=register" in c]) == 1  # not hammered
        assert "link: mqtt -> up" not in fw.text() and "Traceback" not in fw.text()
        assert not os.path.exists(os.path.join(env.workdir, "secret.json"))


def test_device_without_pre_registration_gets_a_token_and_logs_in_with_it(regcloud):
    dn = "nwl-%d" % (time.time() * 1000)
    with env_for(regcloud, dn, "mqtt_nwl") as env:
        fw = env.firmware
        fw.wait_log("register: registered: clientId and deviceToken stored in secret.json", timeout=30)
        fw.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink()  # published as this device (the broker's ACL and record)
        request = mconfigs(env)[0]
        assert request.startswith('AT+MCONFIG="%s.%s|securemode=-2,authType=regnwl,random=' % (PK, dn))
        saved = stored(env)
        tokens = cloud_device(regcloud, dn)["tokens"]
        assert tokens == {saved["client_id"]: saved["device_token"]}
        assert set(saved) == {"product_key", "device_name", "client_id", "device_token"}
        login = 'AT+MCONFIG="%s|securemode=-2,authType=connwl|","%s&%s","%s"' % (saved["client_id"], dn, PK,
                                                                               saved["device_token"])
        assert mconfigs(env)[1] == login
        text = fw.text()
        assert saved["device_token"] not in text and saved["client_id"] not in text and PS not in text

        mark, fw = restart(env)
        fw.wait_log("link: mqtt -> up", timeout=30)
        assert "register:" not in fw.text()
        assert mconfigs(env, mark) == [login]

        # a token the platform does not know (revoked): the login is refused, not taken for the pair
        saved["device_token"] = "RevokedToken00000000000000000001"
        with open(os.path.join(env.workdir, "secret.json"), "w") as f:
            json.dump(saved, f)
        mark, fw = restart(env)
        fw.wait_log("link: refused in mqtt", timeout=30)
        assert "link: mqtt -> up" not in fw.text() and not cloud_device(regcloud, dn)["online"]


def test_a_wrong_product_secret_is_refused_and_explained(regcloud):
    with env_for(regcloud, "nwl-wrong-1", "mqtt_nwl", product_secret="WrongProductSecret000000000000001") as env:
        fw = env.firmware
        line = fw.wait_log("the platform refused the registration", timeout=30)
        assert "check product_secret and sign_method" in line
        fw.wait_log("register: next registration attempt in 600 s", timeout=10)
        assert not [d for d in regcloud.device_list() if d["deviceName"] == "nwl-wrong-1"]
        assert not os.path.exists(os.path.join(env.workdir, "secret.json"))
