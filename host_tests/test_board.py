# The board tier (issue 22): the firmware on the real MicroPython rp2 port, an emulated
# Raspberry Pi Pico (tools/board/), instead of the unix port. Each test starts the local
# cloud and a virtual Air724 module, boots the Pico with its UART1 wired to the module,
# deploys with `make deploy PORT=socket://127.0.0.1:N` (which resets the board, so main.py
# runs from its flash as after power-up) and checks at the cloud and the module: the link
# up, QoS 1 telemetry with no seq lost, a console downlink printed by the firmware, a
# CLOSED and a module restart recovered (the firmware's own counters name them), no
# Traceback or MemoryError; and the watchdog (wdt_ms): no watchdog reset while main.py
# runs, and one once Ctrl-C has stopped it (nobody feeds it then), which proves it was on.
# v1.28.0 runs the mqtt flow; v1.26.1, which has no hashlib.md5, the http flow signed
# hmacmd5 (the firmware's pure-Python MD5).
# Without the emulator kit (RP2EMU; where it is looked for: tools/board/kit.py) the module skips, saying in
# one line what is missing; `make board` runs this file alone (with -rs: the line shown).
import json
import time

import pytest

from tools.board import kit

try:
    KIT = kit.find(images=tuple(kit.IMAGES))
except kit.KitMissing as e:
    pytest.skip(str(e), allow_module_level=True)

from tools.board.env import WDT_MS, BoardEnv  # noqa: E402

# interval 1 s (SimEnv's); the firmware's counters every 2 s; the outbox holds what a
# recovery takes on the emulated board (6-8x slower than silicon when busy)
CFG = {"stats_interval": 2, "backoff_min_ms": 500, "backoff_max_ms": 4000}
DOWNLINK = b'{"cmd":"set","v":"a,b"}\r\nline two "quoted" \\ end'
BOOT_S = 300  # wall seconds for main.py to bring the link up (imports run 6-8x slower here)


def seqs(b):
    return [json.loads(p)["seq"] for t, p, q in b.uplinks()]


def top(b):
    s = seqs(b)
    return max(s) if s else 0


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "no %s within %.0f s" % (what, timeout)
        time.sleep(0.2)


def stats(b, since, until):
    """The firmware's counters (a `link: stats {json}` line every stats_interval), the
    first record from byte `since` of the console on for which until(c) holds."""
    def record(line):
        head, sep, body = line.partition(" link: stats ")
        try:
            return json.loads(body) if sep else None
        except ValueError:
            return None
    line = b.console.wait_log(lambda x: record(x) is not None and until(record(x)), timeout=120, since=since)
    return record(line)


def recovered(b, fault):
    """Inject `fault` into the module once telemetry flows; the link comes back (a new
    MCONNECT at the module, a message created after it at the cloud) and the firmware's
    counters name the fault."""
    n = sum(1 for c in b.vm.commands if c.startswith("AT+MCONNECT"))
    mark = b.console.mark()
    before = top(b)
    getattr(b.vm, fault)()
    wait_until(lambda: sum(1 for c in b.vm.commands if c.startswith("AT+MCONNECT")) > n, 180,
               "MCONNECT after %s" % fault)
    after = top(b)
    b.wait_uplink(lambda p: json.loads(p)["seq"] > after, timeout=120)
    c = stats(b, mark, lambda c: c["state"] == "up" and c["faults"].get(fault, 0) >= 1)
    assert c["faults"][fault] == 1 and c["recoveries"] >= 1, c
    assert top(b) > before


def run_on_board(image, flow, check):
    with BoardEnv(KIT, image, flow=flow, cfg=CFG) as b:
        con = b.console
        assert "board reset" in b.deploy_output, b.deploy_output
        con.wait_log("link: mqtt -> up", timeout=BOOT_S)
        _, payload, qos = b.wait_uplink(timeout=120)
        assert qos == 1 and json.loads(payload)["seq"] >= 1

        mark = con.mark()
        b.cloud.publish(b.topics["get"], DOWNLINK, 1)
        line = con.wait_log("app: downlink", since=mark, timeout=120)
        assert line.endswith("app: downlink %s %r" % (b.topics["get"], DOWNLINK.decode())), line
        assert b.vm.stats["downlinks"] >= 1

        recovered(b, "closed")
        recovered(b, "reboot")

        s = seqs(b)
        missing = sorted(set(range(1, max(s) + 1)) - set(s))
        assert missing == [], "QoS 1 messages lost: %s" % missing
        assert all(q == 1 for t, p, q in b.uplinks())
        out = con.text()
        assert "Traceback" not in out and "MemoryError" not in out, out[-3000:]
        assert b.pico.resets() == ["force: machine.reset()"], b.pico.resets()  # deploy's, no watchdog

        check(b)

        # Ctrl-C stops main.py (its own message, then the REPL); the watchdog cannot be
        # stopped on RP2040, so unfed it resets the board: it was on
        mark = con.mark()
        con.interrupt()
        con.wait_log("stopped.", since=mark, timeout=60)
        t0 = time.monotonic()
        b.pico.wait_message("reason timer: WDT expired", timeout=WDT_MS / 1000 * 8 + 30)
        assert time.monotonic() - t0 >= 1.0  # not at once: after about wdt_ms without a feed
        assert b.pico.resets() == ["force: machine.reset()", "timer: WDT expired"]


def test_mqtt_flow_on_micropython_v1_28_0():
    def check(b):
        mconfig = [c for c in b.vm.commands if c.startswith("AT+MCONFIG=")][0]
        assert "|securemode=2,signmethod=hmacsha256|" in mconfig
        assert not any(c.startswith("AT+HTTP") for c in b.vm.commands)
        # NTP over MQTT set the board's clock: telemetry carries the Unix time in ms
        _, p, _ = b.wait_uplink(lambda p: "ts" in json.loads(p), timeout=60)
        assert json.loads(p)["ts"] > 1.7e12

    run_on_board("v1.28.0", "mqtt", check)


def test_http_flow_on_micropython_v1_26_1_without_hashlib_md5():
    def check(b):
        sent = b"".join(d for way, d in b.vm.log if way == "rx")
        # the auth body was signed hmacmd5 on the board (v1.26.1: the pure-Python MD5; the
        # body names no signmethod for hmacmd5, the platform's default), and the cloud took
        # it: the token it answered is what MQTT connected with
        assert b"productKey=a1DemoPk001" in sent and b"&sign=" in sent and b"signmethod" not in sent
        assert "AT+HTTPACTION=1" in b.vm.commands
        assert b.cloud.stats()["auth"]["requests"] >= 1

    run_on_board("v1.26.1", "http", check)


@pytest.mark.parametrize("image,md5", [("v1.28.0", "True"), ("v1.26.1", "False")])
def test_which_image_has_hashlib_md5(image, md5):
    """rp2 builds have hashlib.md5 from MicroPython v1.27.0 on (commit e6a7dc1114), not
    before: the http flow's fallback is for the older releases in the field."""
    from tools.board.pico import Pico

    with Pico(KIT, image) as pico, pico.repl() as con:
        con.raw()
        out = con.exec("import hashlib, sys; print(hasattr(hashlib, 'md5'), hasattr(hashlib, 'sha256'), sys.version)")
        assert out.split()[:2] == [md5, "True"], out
        assert image[1:] in out
