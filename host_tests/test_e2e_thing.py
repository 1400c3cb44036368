# End to end, issue #8: the real firmware (main.py under micropython) with the virtual
# Air724 module and the local cloud: thing-model property post + reply, property set and a
# service call answered with the same id, NTP time in the telemetry, the OTA version inform
# on every connect, and dynamic registration (register, store, reuse; 6289 explained).
import json
import os
import time


from firmware import __version__
from firmware.aliyun import Topics
from tools.harness.env import CA_NAME, DEMO, SimEnv

PK, DN = DEMO["productKey"], DEMO["deviceName"]
T = Topics(PK, DN)
DYN_PK, DYN_PS = "a1DynRegPk1", "DynRegProductSecret00000000000001"


def since_mark(env, topic):
    return [(p, q) for t, p, q in env.cloud.uplinks()[env.mark:] if t == topic]


def wait_topic(env, topic, pred=None, timeout=15.0):
    return env.cloud.wait_uplink(lambda t, p: t == topic and (pred is None or pred(json.loads(p))), timeout, since=env.mark)


def test_thing_model_round_trips_and_version_inform(cloud):
    with SimEnv(cloud=cloud, cfg={"thing": True, "property_interval": 2}) as env:
        fw = env.firmware
        fw.wait_log("link: mqtt -> up", timeout=30)
        # OTA version inform on connect
        _, payload, _ = wait_topic(env, T.ota_inform)
        inform = json.loads(payload)
        assert inform["params"] == {"version": __version__} and isinstance(inform["id"], str)
        # property post on connect, the platform's reply matched and logged with its code
        _, payload, qos = wait_topic(env, T.property_post)
        post = json.loads(payload)
        assert qos == 1 and post["method"] == "thing.event.property.post" and post["version"] == "1.0"
        assert set(post["params"]) == {"uptime", "rssi"}
        fw.wait_log("app: property post %s: code 200" % post["id"], timeout=15)
        # a platform error code reaches the caller too
        cloud.set_thing_reply(6106)
        try:
            fw.wait_log(lambda line: "app: property post" in line and "code 6106" in line, timeout=15)
        finally:
            cloud.set_thing_reply(200)
        # property set from the cloud -> handler -> set_reply with the same id
        mark = len(fw.lines)
        rid = cloud.set_properties(PK, DN, {"LightSwitch": 1, "name": "lamp"})
        reply = cloud.wait_reply(PK, DN, rid, timeout=15, since=env.mark)
        assert reply == {"id": rid, "code": 200, "data": {}}
        line = fw.wait_log("app: property set", timeout=5, since=mark)
        assert json.loads(line.split("app: property set ", 1)[1]) == {"LightSwitch": 1, "name": "lamp"}
        # a service call with its reply data
        rid = cloud.call_service(PK, DN, "ping", {"x": 7})
        reply = cloud.wait_reply(PK, DN, rid, "ping", timeout=15, since=env.mark)
        assert reply["id"] == rid and reply["code"] == 200
        assert reply["data"]["echo"] == {"x": 7} and reply["data"]["uptime"] >= 0
        # bad JSON on the set topic: logged, nothing escapes, the device keeps working
        mark = len(fw.lines)
        cloud.publish(T.property_set, b'{"id":"1","params":', 0)
        fw.wait_log("thing: bad JSON on %s" % T.property_set, timeout=15, since=mark)
        rid = cloud.set_properties(PK, DN, {"LightSwitch": 0})
        assert cloud.wait_reply(PK, DN, rid, timeout=15, since=env.mark)["code"] == 200
        # the version inform comes again after a reconnect
        n = len(since_mark(env, T.ota_inform))
        assert cloud.kick(PK, DN) >= 1
        wait_topic(env, T.ota_inform, timeout=30)
        deadline = time.monotonic() + 30
        while len(since_mark(env, T.ota_inform)) <= n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(since_mark(env, T.ota_inform)) == n + 1
        text = fw.text()
        assert "Traceback" not in text
        # the user telemetry is unchanged: {"seq": n, ...} on /user/update
        seqs = [json.loads(p)["seq"] for t, p, q in env.uplinks()]
        assert seqs[:3] == [1, 2, 3]


def test_ntp_sets_the_telemetry_timestamp(cloud):
    shift = 3 * 86400  # the cloud's clock runs 3 days ahead of this machine's
    offset = cloud.advance_clock(shift)
    try:
        with SimEnv(cloud=cloud) as env:
            fw = env.firmware
            fw.wait_log("link: mqtt -> up", timeout=30)
            _, payload, qos = wait_topic(env, T.ntp_request)
            assert qos == 0 and set(json.loads(payload)) == {"deviceSendTime"}
            line = fw.wait_log("ntp: time set", timeout=15)
            assert "no RTC here: kept as an offset" in line
            _, payload, _ = env.wait_uplink(lambda p: "ts" in json.loads(p), timeout=15)
            ts = json.loads(payload)["ts"]
            cloud_now = (time.time() + offset) * 1000
            assert abs(ts - cloud_now) < 3000, (ts, cloud_now)
            assert abs(ts - time.time() * 1000) > shift * 1000 - 5000  # not the host's clock
    finally:
        cloud.advance_clock(-shift)


def dyn_env(cloud, dn):
    device = {"productKey": DYN_PK, "deviceName": dn, "deviceSecret": None}
    return SimEnv(cloud=cloud, device=device, cfg={"product_secret": DYN_PS})


def restart(env):
    env.firmware.stop()
    env.vm.power_cycle()
    return len(env.vm.commands), env.run_firmware()


def test_dynamic_registration_store_reuse_and_already_active(cloud):
    dn = "dyn-%d" % (time.time() * 1000)
    with dyn_env(cloud, dn) as env:
        fw = env.firmware
        fw.wait_log("register: registered: DeviceSecret stored in secret.json", timeout=30)
        fw.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink()
        assert any(c == 'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"'
                   for c in env.vm.commands)
        secret_path = os.path.join(env.workdir, "secret.json")
        with open(secret_path) as f:
            stored = json.load(f)
        cloud_dev = [d for d in cloud.device_list() if d["deviceName"] == dn][0]
        assert stored == {"product_key": DYN_PK, "device_name": dn, "device_secret": cloud_dev["deviceSecret"]}
        assert cloud_dev["active"]
        assert sorted(os.listdir(env.workdir)) == sorted([CA_NAME, "config.json", "secret.json"])  # no temp file left
        assert cloud_dev["deviceSecret"] not in fw.text() and DYN_PS not in fw.text()

        # second start: the stored secret is used, no registration
        mark, fw = restart(env)
        fw.wait_log("link: mqtt -> up", timeout=30)
        assert "register:" not in fw.text()
        assert not any("register/device" in c for c in env.vm.commands[mark:])

        # the secret is lost (reflashed board): the platform says 6289, the log explains
        os.remove(secret_path)
        mark, fw = restart(env)
        line = fw.wait_log("already active", timeout=30)
        assert "only once" in line and "Copy the DeviceSecret" in line and "reset the device in the console" in line
        assert any("register/device" in c for c in env.vm.commands[mark:])
        assert "link: mqtt -> up" not in fw.text() and "Traceback" not in fw.text()
        assert not os.path.exists(secret_path)


def test_console_commands_against_a_running_device(cloud):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with SimEnv(cloud=cloud, cfg={"thing": True}) as env:
        env.firmware.wait_log("link: mqtt -> up", timeout=30)
        wait_topic(env, T.property_post)  # subscriptions are in place once on_up ran
        for args in (["set", PK, DN, '{"LightSwitch": 1}'], ["call", PK, DN, "ping", '{"n": 3}']):
            out = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir] + args,
                                 cwd=root, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
            sent, reply = out.stdout.splitlines()[:2]
            rid = sent.split(" id ")[1].split()[0]
            assert reply.startswith("reply ")
            got = json.loads(reply[len("reply "):])
            assert got["id"] == rid and got["code"] == 200
        assert got["data"]["echo"] == {"n": 3}


class _State:
    def __init__(self, now=1700000000.5, code=200):
        self._now, self.thing_reply_code = now, code

    def now(self):
        return self._now


def test_platform_replies_unit():
    from tools.cloud.broker import platform_replies

    st = _State()
    post = json.dumps({"id": "5", "version": "1.0", "params": {"a": 1}, "method": "thing.event.property.post"}).encode()
    [(topic, payload)] = platform_replies(st, PK, DN, T.property_post, post)
    assert topic == T.property_post_reply
    assert json.loads(payload) == {"id": "5", "code": 200, "data": {}, "message": "success", "version": "1.0",
                                   "method": "thing.event.property.post"}
    [(topic, payload)] = platform_replies(st, PK, DN, T.event_post("alarm"), b'{"id":"6","params":{}}')
    assert topic == T.event_post_reply("alarm") and json.loads(payload)["method"] == "thing.event.alarm.post"
    [(topic, payload)] = platform_replies(st, PK, DN, T.ntp_request, b'{"deviceSendTime":"1234"}')
    assert topic == T.ntp_response
    assert json.loads(payload) == {"deviceSendTime": "1234", "serverRecvTime": "1700000000500",
                                   "serverSendTime": "1700000000500"}
    assert platform_replies(st, PK, DN, T.property_post, b"{bad") == []
    assert platform_replies(st, PK, DN, T.update, b"{}") == []
    assert platform_replies(st, PK, DN, T.ota_inform, b'{"id":"1","params":{"version":"1"}}') == []
    assert platform_replies(_State(code=None), PK, DN, T.property_post, post) == []
    assert json.loads(platform_replies(_State(code=6106), PK, DN, T.property_post, post)[0][1])["code"] == 6106
