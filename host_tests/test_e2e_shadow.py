# End to end, issue 25: the device shadow and RRPC with the firmware under micropython
# (examples/shadow_rrpc.py on the Device API), the virtual module and the local cloud.
# Shadow: the report lands in the cloud's document with a version; a desired state set from
# the console reaches the device as a control, is applied, reported and cleared; one set
# while the device was away is applied after it comes back (get on connect); an older
# control is ignored. RRPC: answered byte for byte inside the platform's 8 s, "timeout"
# when the device does not answer, "offline" when it is away, and the console commands.
import json
import os
import subprocess
import sys

from firmware.aliyun import Topics
from tools.harness.env import DEMO, SimEnv
from tools.proc import ROOT

PK, DN = DEMO["productKey"], DEMO["deviceName"]
T = Topics(PK, DN)
EXAMPLE = os.path.join(ROOT, "examples", "shadow_rrpc.py")


def wait_doc(cloud, pred, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        doc = cloud.shadow(PK, DN)
        if pred(doc):
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError("shadow document never matched: %r" % (doc,))
        time.sleep(0.05)


def updates(env):
    return [json.loads(p) for t, p, q in env.cloud.uplinks()[env.mark:] if t == T.shadow_update]


def test_shadow_report_control_apply_and_clear(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=EXAMPLE)
        fw.wait_log("link: mqtt -> up", timeout=40)
        doc = wait_doc(cloud, lambda d: d["state"]["reported"].get("color") == "white")
        assert doc["state"]["reported"] == {"color": "white", "brightness": 50} and doc["version"] >= 1
        assert {"method": "get"} in updates(env)  # the document is read after connecting
        # the console sets a desired state: control -> applied -> reported, desired cleared
        v = cloud.set_desired(PK, DN, {"color": "green"})
        doc = wait_doc(cloud, lambda d: d["version"] > v and not d["state"]["desired"])
        assert doc["state"]["reported"] == {"color": "green", "brightness": 50}
        last = updates(env)[-1]
        assert last == {"method": "update", "version": v + 1,
                        "state": {"reported": {"color": "green", "brightness": 50}, "desired": "null"}}
        fw.wait_log("shadow: desired state of version %d applied and reported" % v, timeout=10)
        # a control that is not newer than the device's version: ignored, nothing reported
        n = len(updates(env))
        mark = len(fw.lines)
        stale = {"method": "control", "payload": {"status": "success", "state": {"desired": {"color": "red"}}},
                 "version": v, "timestamp": 1}
        cloud.publish(T.shadow_get, json.dumps(stale), 1)
        fw.wait_log("shadow: control version %d is not newer than %d: ignored" % (v, v + 1), timeout=15, since=mark)
        # bad JSON on the shadow topic: logged, the device goes on
        cloud.publish(T.shadow_get, b'{"method":"control",', 1)
        fw.wait_log("shadow: bad JSON on %s" % T.shadow_get, timeout=15, since=mark)
        assert len(updates(env)) == n and cloud.shadow(PK, DN)["state"]["reported"]["color"] == "green"

        # away: the desired state set meanwhile is applied once the device is back
        fw.stop()
        v2 = cloud.set_desired(PK, DN, {"brightness": 80})
        env.vm.power_cycle()
        fw = env.run_firmware(script=EXAMPLE)
        doc = wait_doc(cloud, lambda d: d["version"] > v2 and not d["state"]["desired"], timeout=40)
        assert doc["state"]["reported"]["brightness"] == 80
        assert "Traceback" not in fw.text()


def test_rrpc_answered_inside_8_s_timeout_and_offline(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=EXAMPLE)
        fw.wait_log("link: mqtt -> up", timeout=40)
        env.cloud.wait_uplink(lambda t, p: t == T.shadow_update, timeout=20, since=env.mark)  # subscribed by now
        for _ in range(3):
            out = cloud.rrpc(PK, DN, b"status")
            assert out["RrpcCode"] == "SUCCESS", out  # within the 8 s, or it would be TIMEOUT
            answer = json.loads(out["payload"])
            assert answer["lamp"] == {"color": "white", "brightness": 50} and answer["uptime_s"] >= 0
            mid = out["MessageId"]
            t, p, q = cloud.wait_uplink(lambda t, p: t == T.rrpc_response + mid, timeout=5, since=env.mark)
            assert q == 0 and p == out["payload"]  # byte for byte, QoS 0
        out = cloud.rrpc(PK, DN, b"\x00other")
        assert out["RrpcCode"] == "SUCCESS" and out["payload"] == b"unknown request"
        # the console command prints the answer
        r = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir,
                            "rrpc", PK, DN, "status"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("answer {"), r.stdout + r.stderr
        # a device that takes the request but does not answer: TIMEOUT after the call's timeout
        fw.stop()
        os.makedirs(env.workdir, exist_ok=True)
        env.vm.power_cycle()
        fw = env.run_firmware(script=os.path.join(ROOT, "host_tests", "e2e_rrpc_silent.py"))
        fw.wait_log("link: mqtt -> up", timeout=40)
        fw.wait_log("silent: subscribed", timeout=20)
        out = cloud.rrpc(PK, DN, b"status", timeout_ms=1500)
        assert out["RrpcCode"] == "TIMEOUT" and out["ms"] >= 1500, out  # waited the whole timeout
        fw.wait_log("rrpc: request %s (6 bytes): the handler gave no answer" % out["MessageId"], timeout=10)
        r = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir,
                            "rrpc", PK, DN, "status", "--timeout-ms", "1000"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and r.stdout.strip() == "timeout", r.stdout + r.stderr
        fw.stop()  # the module keeps the session (the board is gone, not the module): kick it
        cloud.kick(PK, DN)
        assert not cloud.online(PK, DN)
        assert cloud.rrpc(PK, DN, b"status", timeout_ms=1000)["RrpcCode"] == "OFFLINE"


def test_console_desired_and_shadow_commands(cloud):
    with SimEnv(cloud=cloud, start_firmware=False) as env:
        fw = env.run_firmware(script=EXAMPLE)
        fw.wait_log("link: mqtt -> up", timeout=40)
        wait_doc(cloud, lambda d: "color" in d["state"]["reported"])
        r = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir,
                            "desired", PK, DN, '{"color": "blue"}'], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        sent, reported = r.stdout.splitlines()[:2]
        v = int(sent.split("control version ")[1].split()[0])
        assert reported.startswith("reported ") and json.loads(reported[9:].rsplit(" version ", 1)[0])["color"] == "blue"
        assert int(reported.rsplit(" version ", 1)[1]) > v
        r = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir,
                            "shadow", PK, DN], cwd=ROOT, capture_output=True, text=True, timeout=60)
        doc = json.loads(r.stdout)
        assert doc["version"] > v and doc["state"]["reported"]["color"] == "blue" and doc["state"]["desired"] == {}
        assert "Traceback" not in fw.text()


class _State:
    """What tools/cloud/shadow.py needs of the cloud's CloudState."""

    def __init__(self, path=None):
        import threading

        self.lock, self.state_path = threading.RLock(), path

    def now(self):
        return 1469564576.5


def test_local_shadow_rules_unit(tmp_path):
    from tools.cloud import shadow
    from tools.cloud.broker import platform_replies

    st = _State(str(tmp_path / "state.json"))

    def send(msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        [(topic, payload)] = platform_replies(st, PK, DN, T.shadow_update, data)
        assert topic == T.shadow_get
        return json.loads(payload)

    def code(msg):
        r = send(msg)
        assert r["method"] == "reply" and r["payload"]["status"] == "error", r
        return r["payload"]["content"]["errorcode"]

    assert code(b"{bad") == "400" and code(b"[1]") == "400" and code({}) == "407"
    assert code({"state": {}}) == "401" and code({"method": "put"}) == "406"
    assert code({"method": "update", "version": 1}) == "402"
    assert code({"method": "update", "state": {"reported": {"a": 1}}}) == "403"
    assert code({"method": "update", "state": {"reported": {"a": 1}}, "version": True}) == "403"
    assert code({"method": "update", "state": {}, "version": 1}) == "404"
    assert code({"method": "update", "state": {"reported": {}}, "version": 1}) == "405"
    assert code({"method": "update", "state": {"reported": {"k%d" % i: i for i in range(129)}}, "version": 1}) == "408"
    ok = send({"method": "update", "state": {"reported": {"color": "red"}}, "version": 1})
    assert ok == {"method": "reply", "payload": {"status": "success", "version": 1}, "timestamp": 1469564576}
    assert code({"method": "update", "state": {"reported": {"color": "blue"}}, "version": 1}) == "409"
    v, [(topic, payload)] = shadow.set_desired(st, PK, DN, {"color": "green"})
    ctl = json.loads(payload)
    assert topic == T.shadow_get and v == 2 and ctl["method"] == "control" and ctl["version"] == 2
    assert ctl["payload"]["state"] == {"reported": {"color": "red"}, "desired": {"color": "green"}}
    assert ctl["payload"]["status"] == "success" and ctl["payload"]["metadata"]["desired"]["color"]["timestamp"] == 1469564576
    got = send({"method": "get"})
    assert got["payload"]["state"] == ctl["payload"]["state"] and got["version"] == 2
    send({"method": "update", "state": {"reported": {"color": "green"}, "desired": "null"}, "version": 3})
    assert shadow.document(st, PK, DN)["state"] == {"reported": {"color": "green"}, "desired": {}}
    send({"method": "delete", "state": {"reported": {"color": "null"}}, "version": 4})
    assert shadow.document(st, PK, DN)["state"]["reported"] == {}
    # kept on disk: a restarted cloud has the same document
    st2 = _State(str(tmp_path / "state.json"))
    assert shadow.document(st2, PK, DN)["version"] == 4
    send({"method": "update", "state": {"reported": "null"}, "version": -1})  # the documented reset
    assert shadow.document(st, PK, DN)["version"] == 0
    try:
        shadow.set_desired(st, PK, DN, {"a": 1}, version=0)
        raise AssertionError("a version not above the shadow's was taken")
    except ValueError as e:
        assert "409" in str(e)


def test_local_rrpc_unit():
    import threading

    from tools.cloud import rrpc

    st = _State()
    sent = []

    def publish(topic, payload):
        sent.append((topic, payload))
        mid = topic.rsplit("/", 1)[1]
        threading.Timer(0.05, rrpc.on_response, (st, PK, DN, mid, b"pong")).start()

    out = rrpc.call(st, publish, lambda pk, dn: True, PK, DN, b"ping", 2000)
    assert out["RrpcCode"] == "SUCCESS" and out["PayloadBase64Byte"] == "cG9uZw=="
    assert sent == [(T.rrpc_request + out["MessageId"], b"ping")]
    out = rrpc.call(st, lambda t, p: None, lambda pk, dn: True, PK, DN, b"ping", 1000)
    assert out["RrpcCode"] == "TIMEOUT" and out["ms"] >= 1000
    assert rrpc.on_response(st, PK, DN, out["MessageId"], b"late") is False  # dropped, as the platform does
    assert rrpc.call(st, publish, lambda pk, dn: False, PK, DN, b"x")["RrpcCode"] == "OFFLINE"
    for bad in (999, 8001, "8000", True):
        try:
            rrpc.call(st, publish, lambda pk, dn: True, PK, DN, b"x", bad)
            raise AssertionError(bad)
        except ValueError:
            pass


def test_make_sim_shows_the_shadow_and_an_rrpc_call(cloud, capsys):
    from tools.harness.demo import shadow_rrpc

    result = shadow_rrpc(cloud, False)
    out = capsys.readouterr().out
    assert "error" not in result, result
    assert "console desired" in out and "desired cleared" in out and "RRPC call" in out and '"lamp"' in out


def test_rrpc_answered_while_the_device_is_busy_publishing(cloud):
    # requests arrive while QoS 1 publishes wait for the module: the answers are sent from
    # the receive path or by the next step, every one inside the platform's 8 s
    with SimEnv(cloud=cloud, start_firmware=False, vm={"connect_delay": 0.2}) as env:
        fw = env.run_firmware(script=os.path.join(ROOT, "host_tests", "e2e_rrpc_busy.py"))
        fw.wait_log("busy: up", timeout=40)
        env.wait_uplink(timeout=20)
        results = [cloud.rrpc(PK, DN, b"req-%d" % i) for i in range(10)]
        assert [r["RrpcCode"] for r in results] == ["SUCCESS"] * 10, results
        assert [r["payload"] for r in results] == [b"echo:req-%d" % i for i in range(10)]
        assert len(env.uplinks()) >= 10  # it was publishing all along
        assert "Traceback" not in fw.text()
