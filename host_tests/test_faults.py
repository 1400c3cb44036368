# End to end, one test per fault kind (issue #6): the real firmware (main.py under
# `micropython`) against the virtual Air724 and the local cloud. Each test lets telemetry
# (QoS 1, every 0.2 s) flow, injects one fault, and asserts that the firmware recovers: a
# message created after the fault arrives at the cloud, the QoS 1 seq numbers at the cloud
# have no gaps (duplicates after a lost PUBACK are allowed: at-least-once), the firmware
# saw what happened (its own counters, Link.stats(), name the fault), the module saw the
# repair it expects (its command record), and no Traceback escaped.
import json
import re
import time

import pytest

from firmware.aliyun import Topics
from tools.cloud import registry
from tools.harness.env import SimEnv

CFG = {"interval": 0.2, "backoff_min_ms": 100, "backoff_max_ms": 1000, "outbox": 500, "stats_interval": 1}


def seqs(env):
    return [json.loads(p)["seq"] for t, p, q in env.uplinks()]


def top(env):
    s = seqs(env)
    return max(s) if s else 0


def started(env, n=3):
    """The link is up and telemetry flows (the cloud holds seq n): the firmware's log line
    index from here on, for counters()."""
    env.wait_uplink(lambda p: json.loads(p)["seq"] >= n, timeout=45)
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


def _record(line):
    head, sep, body = line.partition(" link: stats ")
    return json.loads(body) if sep else None


def counters(env, since, until=lambda c: True, timeout=15):
    """The firmware's own counters (Link.stats(), a `link: stats {json}` record every
    stats_interval): the first record from log line `since` on for which until(c) holds."""
    line = env.firmware.wait_log(lambda x: _record(x) is not None and until(_record(x)), timeout=timeout, since=since)
    return _record(line)


def back_up(c):
    """Counters of a link that went down and came back up."""
    return c["state"] == "up" and c["recoveries"] >= 1


def accounted(c):
    """Every QoS 1 attempt ended acked, unacked or rejected, but the one still in flight."""
    return 0 <= c["sent"] - (c["acked"] + c["unacked"] + c["rejected"]) <= 1


def tx_since(env, i):
    """What the module wrote on the UART from its log entry i on."""
    return b"".join(d for way, d in env.vm.log[i:] if way == "tx")


def test_closed(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        i = len(env.vm.commands)
        env.vm.closed()
        recovered(env, m)
        c = counters(env, mark, back_up)
        assert c["faults"].get("closed") == 1, c
        after = env.vm.commands[i:]  # only MQTT redone: the module and the bearer were fine
        assert any(x.startswith("AT+MCONNECT") for x in after), after
        assert "AT+SAPBR=1,1" not in after and "ATE0" not in after, after


def test_session_lost_without_a_urc_is_found_with_mqttstatu(cloud):
    # telemetry only every 30 s, so nothing but the status probe can notice the dead link
    cfg = dict(CFG, interval=30, status_ms=500)
    with SimEnv(cloud=cloud, cfg=cfg) as env:
        fw = env.firmware
        fw.wait_log("link: mqtt -> up", timeout=30)
        env.wait_uplink(timeout=15)  # the first telemetry is out: nothing else queued
        ntp = Topics(env.device["productKey"], env.device["deviceName"]).ntp_request
        env.cloud.wait_uplink(lambda t, p: t == ntp, timeout=15, since=env.mark)  # NTP asked too
        time.sleep(0.3)
        mark, i = len(fw.lines), len(env.vm.log)
        env.vm.lost_session()
        c = counters(env, mark, back_up, timeout=30)
        assert c["status_checks"] >= 1 and c["faults"] and "closed" not in c["faults"], c  # found by AT+MQTTSTATU
        assert b"CLOSED" not in tx_since(env, i)  # the module said nothing
        env.cloud.publish(env.topics["get"], b"after the dead link", 1)
        fw.wait_log("app: downlink %s after the dead link" % env.topics["get"], timeout=15, since=mark)
        assert "Traceback" not in fw.text()


@pytest.mark.parametrize("urc", ["+PDP: DEACT", "+CGEV: NW PDN DEACT 1"])
def test_pdp_loss(cloud, urc):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        n_bearer = env.vm.commands.count("AT+SAPBR=1,1")
        i = len(env.vm.commands)
        env.vm.pdp_loss(down=3, urc=urc)
        recovered(env, m)
        c = counters(env, mark, back_up)
        assert c["faults"].get("pdp_deact") == 1, c
        assert "AT+CGATT?" in env.vm.commands[i:]  # back to the attach phase
        assert env.vm.commands.count("AT+SAPBR=1,1") == n_bearer + 1  # the bearer reopened


def test_reboot(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        n_ate0 = env.vm.commands.count("ATE0")
        env.vm.reboot()
        recovered(env, m)
        c = counters(env, mark, back_up)
        assert c["faults"].get("reboot") == 1, c
        assert env.vm.commands.count("ATE0") == n_ate0 + 1  # echo off again after the restart


def test_power_cycle_module_silent(cloud):
    # no RDY, no answer until autobaud trains it again: the firmware notices by the timeout
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        n_ate0 = env.vm.commands.count("ATE0")
        env.vm.power_cycle()
        recovered(env, m, timeout=60)
        c = counters(env, mark, back_up)
        assert c["faults"].get("timeout", 0) >= 1, c  # noticed by the silence
        assert env.vm.commands.count("ATE0") == n_ate0 + 1  # the module phase again: autobaud, echo off


def test_sim_removed_then_inserted(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.sim_removed()
        c = counters(env, mark, lambda c: c["faults"].get("sim_removed") == 1)  # the firmware knows
        assert c["state"] != "up", c
        time.sleep(2)
        assert top(env) <= m + 2  # nothing can go out without a SIM
        env.vm.sim_inserted()
        recovered(env, m)
        counters(env, mark, back_up)


def test_garbage_bytes(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        for data in (None, None, b"\xff\xfe\x00\x1b[0m", b"\r\n+CME ERR\r\n", b"noise without a line end", None):
            env.vm.garbage(data)
            time.sleep(0.15)
        recovered(env, m)
        assert env.vm.faults_injected == {"garbage": 6}
        assert counters(env, mark)["state"] == "up"


def test_dropped_bytes_lose_a_puback(cloud):
    # right after the next publish's OK, its "\r\nPUBACK\r\n" (10 bytes) is lost: the
    # broker has the message, the firmware never hears it was taken and sends it again
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.schedule("drop_bytes", 10, on_command="AT+MPUB")
        s = recovered(env, m, timeout=60)
        assert env.vm.faults_injected == {"drop_bytes": 1}
        c = counters(env, mark, lambda c: c["unacked"] >= 1)
        assert accounted(c), c
        assert len(s) > len(set(s)), s  # the resent message: a duplicate at the broker


def test_reply_that_never_comes(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.mute(1)  # the next command is lost on the way in: no echo, no reply
        recovered(env, m, timeout=60)
        assert [executed for _cmd, executed in env.vm.muted] == [False]
        c = counters(env, mark, back_up)
        assert c["faults"].get("timeout", 0) >= 1, c


def test_lost_reply_of_an_executed_command(cloud):
    # the next two commands (telemetry publishes: all the firmware sends while up) run but
    # answer nothing; their PUBACKs still come. What they did stands, nothing is lost, and
    # the firmware accounts for every attempt
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        env.vm.mute(2, execute=True)
        s = recovered(env, m, timeout=60)
        muted = env.vm.muted
        assert [executed for _cmd, executed in muted] == [True, True]
        found = [re.search(r"\\22seq\\22: (\d+)", cmd) for cmd, _ in muted if cmd.startswith("AT+MPUB=")]
        published = [int(x.group(1)) for x in found if x]
        assert published, muted
        assert all(q in s for q in published), (published, s)  # the broker has them
        c = counters(env, mark, lambda c: c["state"] == "up" and c["acked"] >= max(published))
        assert accounted(c), c


def test_slow_replies(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        before = counters(env, mark)
        env.vm.slow(0.6)
        time.sleep(3)
        assert top(env) > m  # slower, not stopped
        env.vm.slow(0)
        s = recovered(env, m)
        assert len(s) == len(set(s))  # slow but within every deadline: no duplicates
        after = counters(env, len(env.firmware.lines))
        assert after["faults"] == before["faults"] and after["reconnects"] == before["reconnects"], (before, after)


def test_broker_restart(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        cloud.restart_broker()
        recovered(env, m)
        assert counters(env, mark, back_up)["faults"].get("closed") == 1


def test_broker_crash(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        cloud.restart_broker(crash=True)  # connections reset, no MQTT goodbye
        recovered(env, m)
        assert counters(env, mark, back_up)["faults"].get("closed") == 1


def test_server_kick(cloud):
    with SimEnv(cloud=cloud, cfg=CFG) as env:
        mark = started(env)
        m = top(env)
        assert cloud.kick(env.device["productKey"], env.device["deviceName"]) == 1
        recovered(env, m)
        assert counters(env, mark, back_up)["faults"].get("closed") == 1


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
        assert counters(env, mark, back_up)["tokens"] == 1


def test_http_flow_wrong_secret_is_not_hammered(cloud):
    device = dict(registry.demo()["devices"][1], deviceSecret="WrongSecret000000000000000000000")
    with SimEnv(cloud=cloud, flow="http", device=device, cfg=CFG) as env:
        c = counters(env, 0, lambda c: c["faults"].get("auth") == 1, timeout=30)  # refused by the platform
        assert c["state"] == "auth" and c["tokens"] == 0, c
        time.sleep(2)
        assert env.vm.commands.count("AT+HTTPACTION=1") == 1  # not hammered: a long backoff
        assert device["deviceSecret"] not in env.firmware.text()
        assert env.uplinks() == []
