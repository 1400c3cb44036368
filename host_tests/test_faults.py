# End to end, one test per fault kind (issue #6): the real firmware (main.py under
# `micropython`) against the virtual Air724 and the local cloud. Each test lets telemetry
# (QoS 1, every 0.2 s) flow, injects one fault, and asserts that the firmware recovers: a
# message created after the fault arrives at the cloud, the QoS 1 seq numbers at the cloud
# have no gaps (duplicates after a lost PUBACK are allowed: at-least-once), the firmware
# saw what happened (its log names the fault), and no Traceback escaped.
import json
import time

import pytest

from tools.cloud import registry
from tools.harness.env import SimEnv

CFG = {"interval": 0.2, "backoff_min_ms": 100, "backoff_max_ms": 1000, "outbox": 500, "stats_interval": 1}


def seqs(env):
    return [json.loads(p)["seq"] for t, p, q in env.uplinks()]


def top(env):
    s = seqs(env)
    return max(s) if s else 0


def started(env, n=3):
    env.firmware.wait_log("link: mqtt -> up", timeout=30)
    env.wait_uplink(lambda p: json.loads(p)["seq"] >= n, timeout=20)
    return len(env.firmware.lines)


def recovered(env, before, timeout=45):
    """A message created after the fault reaches the cloud; then the whole record is
    checked: every seq 1..max present, no Traceback."""
    env.wait_uplink(lambda p: json.loads(p)["seq"] > before + 3, timeout=timeout)
    s = seqs(env)
    missing = sorted(set(range(1, max(s) + 1)) - set(s))
    assert missing == [], "QoS 1 messages lost: %s\n%s" % (missing[:20], env.firmware.text()[-3000:])
    assert "Traceback" not in env.firmware.text(), env.firmware.text()[-3000:]
    return s


def log_since(env, mark):
    return "\n".join(env.firmware.lines[mark:])


def stats(env, mark):
    line = env.firmware.wait_log("link: stats ", timeout=5, since=mark)
    return json.loads(line.split("link: stats ", 1)[1])


def test_closed(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.closed()
        recovered(env, m)
        text = log_since(env, mark)
        assert "link event closed" in text and "link: up -> mqtt" in text and "link: mqtt -> up" in text


def test_session_lost_without_a_urc_is_found_with_mqttstatu(cloud):
    # telemetry only every 30 s, so nothing but the status probe can notice the dead link
    cfg = dict(CFG, interval=30, status_ms=500)
    with SimEnv(cloud=cloud, cfg=cfg) as env:
        fw = env.firmware
        fw.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink(timeout=15)  # the first telemetry is out: nothing else queued
        fw.wait_log("ntp: time set", timeout=15)
        time.sleep(0.3)
        mark = len(fw.lines)
        env.vm.lost_session()
        fw.wait_log("MQTT status 0: session lost", timeout=10, since=mark)
        fw.wait_log("link: mqtt -> up", timeout=20, since=mark)
        assert "CLOSED" not in log_since(env, mark)  # the module said nothing
        env.cloud.publish(env.topics["get"], b"after the dead link", 1)
        fw.wait_log("app: downlink %s after the dead link" % env.topics["get"], timeout=15, since=mark)
        assert "Traceback" not in fw.text()


@pytest.mark.parametrize("urc", ["+PDP: DEACT", "+CGEV: NW PDN DEACT 1"])
def test_pdp_loss(cloud, urc):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        n_bearer = env.vm.commands.count("AT+SAPBR=1,1")
        env.vm.pdp_loss(down=3, urc=urc)
        recovered(env, m)
        text = log_since(env, mark)
        assert "link event pdp_deact" in text and "-> attach" in text
        assert env.vm.commands.count("AT+SAPBR=1,1") == n_bearer + 1  # the bearer reopened


def test_reboot(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        n_ate0 = env.vm.commands.count("ATE0")
        env.vm.reboot()
        recovered(env, m)
        assert "link event reboot" in log_since(env, mark)
        assert env.vm.commands.count("ATE0") == n_ate0 + 1  # echo off again after the restart


def test_power_cycle_module_silent(cloud):
    # no RDY, no answer until autobaud trains it again: the firmware notices by the timeout
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.power_cycle()
        recovered(env, m, timeout=60)
        text = log_since(env, mark)
        assert "timeout in up" in text and "-> module" in text


def test_sim_removed_then_inserted(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.sim_removed()
        env.firmware.wait_log("no SIM card", timeout=15, since=mark)
        time.sleep(2)
        assert top(env) <= m + 2  # nothing can go out without a SIM
        env.vm.sim_inserted()
        recovered(env, m)
        assert "link event sim_removed" in log_since(env, mark)


def test_garbage_bytes(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        for data in (None, None, b"\xff\xfe\x00\x1b[0m", b"\r\n+CME ERR\r\n", b"noise without a line end", None):
            env.vm.garbage(data)
            time.sleep(0.15)
        recovered(env, m)
        assert "Traceback" not in log_since(env, mark)


def test_dropped_bytes_lose_a_puback(cloud):
    # the next output is an MPUB's "\r\nOK\r\n\r\nPUBACK\r\n": 12 bytes gone leave "ACK":
    # the PUBACK never comes, the message is sent again after the recovery (a duplicate)
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.drop_bytes(12)
        s = recovered(env, m, timeout=60)
        st = stats(env, len(env.firmware.lines))
        assert st["unacked"] >= 1 or "unknown line" in log_since(env, mark)
        assert len(s) >= len(set(s))


def test_reply_that_never_comes(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.mute(1)  # the next command is lost on the way in: no echo, no reply
        recovered(env, m, timeout=60)
        text = log_since(env, mark)
        assert "timeout in up" in text and "no final result" in text


def test_lost_reply_of_an_executed_command(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        started(env)
        m = top(env)
        env.vm.mute(2, execute=True)
        recovered(env, m, timeout=60)


def test_slow_replies(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.slow(0.6)
        time.sleep(3)
        assert top(env) > m  # slower, not stopped
        env.vm.slow(0)
        s = recovered(env, m)
        assert len(s) == len(set(s))  # slow but within every deadline: no duplicates
        assert "-> module" not in log_since(env, mark)


def test_broker_restart(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        cloud.restart_broker()
        recovered(env, m)
        assert "link event closed" in log_since(env, mark)


def test_broker_crash(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        cloud.restart_broker(crash=True)  # connections reset, no MQTT goodbye
        recovered(env, m)
        assert "link event closed" in log_since(env, mark)


def test_server_kick(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        started(env)
        m = top(env)
        assert cloud.kick(env.device["productKey"], env.device["deviceName"]) == 1
        recovered(env, m)


def test_http_flow_pdp_loss_reuses_the_token_and_resubscribes(cloud):
    with SimEnv(cloud=cloud, flow="http", cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        i = len(env.vm.commands)
        before = set(c for c in env.vm.commands[:i] if c.startswith("AT+MSUB="))
        env.vm.pdp_loss(down=1)
        recovered(env, m)
        assert env.vm.commands.count("AT+HTTPACTION=1") == 1  # the 7-day token is still good
        after = set(c for c in env.vm.commands[i:] if c.startswith("AT+MSUB="))
        assert 'AT+MSUB="%s",0' % env.topics["get"] in before
        assert before <= after  # every subscription again on the new session
        # downlinks work on the new session
        mk = len(env.firmware.lines)
        cloud.publish(env.topics["get"], b"after-recovery", 1)
        env.firmware.wait_log("app: downlink %s after-recovery" % env.topics["get"], timeout=15, since=mk)
        assert "Traceback" not in log_since(env, mark)


def test_http_flow_wrong_secret_is_not_hammered(cloud):
    device = dict(registry.demo()["devices"][1], deviceSecret="WrongSecret000000000000000000000")
    with SimEnv(cloud=cloud, flow="http", device=device, cfg=CFG) as env:
        line = env.firmware.wait_log("check the device triple", timeout=30)
        assert "retrying slowly" in line
        time.sleep(2)
        assert env.vm.commands.count("AT+HTTPACTION=1") == 1
        assert "auth in auth" in env.firmware.text()
        assert device["deviceSecret"] not in env.firmware.text()
        assert env.uplinks() == []
