# Every example in examples/ runs here, unchanged, under micropython against the virtual
# module and the local cloud: what it publishes is checked at the cloud, what the cloud
# sends it is acted on.
import json
import os

from firmware.aliyun import Topics
from tools.harness.env import DEMO, SimEnv
from tools.proc import ROOT

PK, DN = DEMO["productKey"], DEMO["deviceName"]
T = Topics(PK, DN)


def example(name):
    return os.path.join(ROOT, "examples", name)


def uplinks(env, topic):
    return [json.loads(p) for t, p, q in env.cloud.uplinks()[env.mark:] if t == topic]


def test_telemetry_example_publishes_its_own_json(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=example("telemetry.py"))
        env.wait_uplink(lambda p: b"temperature" in p, timeout=40)
        env.wait_uplink(lambda p: json.loads(p)["temperature"] == 20.2, timeout=20)
        got = [m for m in uplinks(env, T.update) if "temperature" in m]
        assert [m["temperature"] for m in got[:2]] == [20.1, 20.2]  # the sensor's own readings, in order
        assert all(isinstance(m["uptime_s"], int) for m in got)
        assert "Traceback" not in fw.text()


def test_command_example_drives_the_pin_and_answers(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=example("command_gpio.py"))
        fw.wait_log("link: mqtt -> up", timeout=40)
        fw.wait_log(lambda line: "MSUB" in line or "up (after" in line, timeout=10)
        cmd = "/%s/%s/user/cmd" % (PK, DN)
        for state in (1, 0):
            mark = len(fw.lines)
            env.cloud.publish(cmd, json.dumps({"led": state}), 1)
            fw.wait_log("led %d" % state, timeout=20, since=mark)
            env.wait_uplink(lambda p, s=state: json.loads(p) == {"led": s}, timeout=20)
        env.cloud.publish(cmd, "not json", 1)
        env.wait_uplink(lambda p: b"error" in p, timeout=20)
        assert "Traceback" not in fw.text()


def test_thing_model_example_posts_applies_sets_and_answers_a_service(cloud):
    with SimEnv(cloud=cloud, start_firmware=False, cfg={"thing": True}) as env:
        fw = env.run_firmware(script=example("thing_model.py"))
        _, payload, _ = env.cloud.wait_uplink(lambda t, p: t == T.property_post, timeout=40, since=env.mark)
        assert json.loads(payload)["params"] == {"LightSwitch": 0, "Temperature": 21.5}
        rid = env.cloud.set_properties(PK, DN, {"LightSwitch": 1})
        assert env.cloud.wait_reply(PK, DN, rid, timeout=20, since=env.mark)["code"] == 200
        env.cloud.wait_uplink(lambda t, p: t == T.property_post and json.loads(p)["params"]["LightSwitch"] == 1,
                              timeout=20, since=env.mark)
        rid = env.cloud.call_service(PK, DN, "toggle", {})
        reply = env.cloud.wait_reply(PK, DN, rid, "toggle", timeout=20, since=env.mark)
        assert reply["code"] == 200 and reply["data"] == {"LightSwitch": 0}
        assert "Traceback" not in fw.text()


def test_async_example_blinks_while_the_link_works_and_takes_commands(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=example("async_blink.py"))
        first = fw.wait_log("telemetry acked", timeout=40)  # the QoS 1 publish returned after its PUBACK
        fw.wait_log("telemetry acked", timeout=20, since=fw.lines.index(first) + 1)
        got = [m for m in uplinks(env, T.update) if "blinks" in m]
        assert len(got) >= 2 and got[1]["blinks"] > got[0]["blinks"]  # the LED task ran meanwhile
        cmd = "/%s/%s/user/cmd" % (PK, DN)
        env.cloud.publish(cmd, json.dumps({"blink_ms": 100}), 1)
        env.wait_uplink(lambda p: json.loads(p) == {"blink_ms": 100}, timeout=20)
        fw.wait_log("blink 100", timeout=5)
        env.cloud.publish(cmd, "not json", 1)
        env.wait_uplink(lambda p: b"error" in p, timeout=20)
        assert "Traceback" not in fw.text()
