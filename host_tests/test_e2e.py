# End to end: the real firmware under the `micropython` interpreter, a virtual Air724
# module on TCP, and the local cloud (real broker, real sign checks). What arrives is
# checked at the broker side, byte for byte.
import json
import os

import pytest

import firmware

from tools.harness.build import build_romfs, compile_mpy
from tools.cloud import registry
from tools.harness.env import SimEnv

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISH_SCRIPT = os.path.join(HERE, "e2e_publish.py")


def seqs(env):
    return [json.loads(p)["seq"] for t, p, q in env.uplinks()]


def publish(env, jobs):
    """Run host_tests/e2e_publish.py on the virtual board with these publish jobs."""
    with open(os.path.join(env.workdir, "publish.txt"), "w") as f:
        f.write("\n".join(jobs))
    return env.run_firmware(script=PUBLISH_SCRIPT)


def round_trip(env):
    fw = env.firmware
    fw.wait_log("link: mqtt -> up", timeout=30)
    topic, payload, qos = env.wait_uplink()
    assert qos == 1
    assert json.loads(payload)["seq"] >= 1
    downlink = b'{"cmd":"set","v":"a,b"}\r\nline two "quoted" \\ end'
    mark = len(fw.lines)
    env.cloud.publish(env.topics["get"], downlink, 1)
    line = fw.wait_log("app: downlink", timeout=15, since=mark)
    assert line.endswith("app: downlink %s %r" % (env.topics["get"], downlink.decode()))
    assert "Traceback" not in fw.text()


@pytest.mark.parametrize("flow,tls", [("mqtt", True), ("mqtt", False), ("http", True)])
def test_flow_round_trip(cloud, flow, tls):
    with SimEnv(flow=flow, tls=tls, cloud=cloud) as env:
        round_trip(env)
        ota = "/ota/device/inform/a1DemoPk001/demo-device-1"  # the version, on every connect
        _, payload, _ = env.cloud.wait_uplink(lambda t, p: t == ota, timeout=10, since=env.mark)
        assert json.loads(payload) == {"id": "1", "params": {"version": firmware.__version__}}
        cmds = env.vm.commands
        start = "AT+SSLMIPSTART" if tls else "AT+MIPSTART"
        assert any(c.startswith(start + '="a1DemoPk001.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883') for c in cmds)
        mconfig = [c for c in cmds if c.startswith("AT+MCONFIG=")][0]
        if flow == "mqtt":
            assert "|securemode=%d,signmethod=hmacsha256|" % (2 if tls else 3) in mconfig
            assert not any(c.startswith("AT+HTTP") for c in cmds)
        else:
            i = cmds.index("AT+HTTPINIT")
            assert cmds[i + 1] == 'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"'
            assert cmds[i + 3].startswith("AT+HTTPDATA=") and cmds[i + 4] == "AT+HTTPACTION=1"
            assert cmds[i + 5] == "AT+HTTPREAD" and cmds[i + 6] == "AT+HTTPTERM"


def test_round_trip_from_a_romfs_image(cloud, tmp_path):
    # the compiled firmware in a ROMFS image (as a board with a ROMFS partition holds it):
    # nothing else on the path, so every module runs from the image, bytecode in place
    mpy = str(tmp_path / "mpy")
    compile_mpy(mpy)
    img = build_romfs(mpy, str(tmp_path / "firmware.romfs"))
    with SimEnv(cloud=cloud, romfs=img) as env:
        round_trip(env)
        assert "Traceback" not in env.firmware.text()


def test_telemetry_sequence_has_no_gaps(cloud):
    with SimEnv(cloud=cloud, cfg={"interval": 0.2}) as env:
        env.firmware.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink(lambda p: json.loads(p)["seq"] >= 10, timeout=20)
        got = seqs(env)
        assert got[:10] == list(range(1, 11))


def test_wrong_secret_is_refused_and_not_hammered(cloud):
    device = dict(registry.demo()["devices"][1], deviceSecret="WrongSecret000000000000000000000")
    with SimEnv(cloud=cloud, device=device) as env:
        line = env.firmware.wait_log("check the device triple", timeout=30)
        assert "retrying slowly" in line
        text = env.firmware.text()
        assert "refused in mqtt" in text and "retry mqtt in" in text
        assert device["deviceSecret"] not in text
        assert env.vm.connack_code in (4, 5)
        assert env.uplinks() == []
        assert not env.cloud.online(device["productKey"], device["deviceName"])
        assert sum(1 for c in env.vm.commands if c.startswith("AT+MCONNECT")) == 1


def test_user_payloads_arrive_exactly_and_cannot_inject(cloud):
    payloads = [
        (1, b'x"\r\nAT+MIPCLOSE\r\n'),  # would end the quoted string and send a command
        (0, b'back\\slash "q" \\22 literal'),
        (1, "中文 UTF-8 text".encode()),
        (1, bytes(range(256))),  # binary: goes through AT+MPUBEX
        (1, b"L" * 3000),  # longer than the quoted AT+MPUB limit
    ]
    with SimEnv(cloud=cloud, vm={"version": "V401853"}, start_firmware=False) as env:
        fw = publish(env, ["%d:%s" % (q, p.hex()) for q, p in payloads])
        fw.wait_log("DONE", timeout=60)
        assert [x for x in fw.lines if x.startswith("PUBLISHED")] == ["PUBLISHED %d" % len(p) for q, p in payloads]
        env.wait_uplink(lambda p: p == payloads[-1][1])  # the broker acks before it records
        got = [p for t, p, q in env.uplinks()]
        assert got == [p for q, p in payloads]
        qos = [q for t, p, q in env.uplinks()]
        assert qos == [q for q, p in payloads]
        assert "AT+MIPCLOSE" not in env.vm.commands
        assert sum(1 for c in env.vm.commands if c.startswith("AT+MPUBEX=")) == 2


def test_oversized_payload_is_refused_with_a_clear_error(cloud):
    with SimEnv(cloud=cloud, vm={"version": "V401853"}, start_firmware=False) as env:
        fw = publish(env, ["1:" + (b"x" * 9000).hex(), "1:6f6b"])
        fw.wait_log("DONE", timeout=60)
        refused = [line for line in fw.lines if line.startswith("REFUSED")]
        assert len(refused) == 1 and "9000 bytes" in refused[0], refused  # the error names the size
        env.wait_uplink(lambda p: p == b"ok")
        assert [p for t, p, q in env.uplinks()] == [b"ok"]
        # refused before the module saw any of it: the only publish it got is the next one
        assert [c for c in env.vm.commands if c.startswith("AT+MPUB")] == ['AT+MPUB="%s",1,0,"ok"' % env.topics["update"]]
