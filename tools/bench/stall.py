"""The asyncio front's stall figure (issue 23): how late a concurrent 10 ms ticker task runs
while the link connects, recovers from CLOSED and publishes QoS 1.

    .venv/bin/python -m tools.bench.stall [--publishes 20] [--json FILE] [--quick] [--no-board]

The device half (the top of this file) runs Device().aio() with its supervisor as a task
beside a ticker that sleeps 10 ms in a loop and records the longest interval between two of
its turns; a phase's stall is that interval less the 10 ms: how long the loop was held.
Phases: power-up to connected (module, attach, MQTT connect, subscriptions), a CLOSED that
the host makes the module send (the host injects it when the device asks) until connected
again, and --publishes awaited QoS 1 publishes, each returning after its PUBACK.
On the unix port: under micropython from the repository's source, against the virtual
module with a real module's reply delays (tools/bench/connect.py DELAYS) and the local
cloud. On the emulated Pico (tools/board/, the real rp2 port, .mpy from its flash) when the
kit is there; one line saying what is missing otherwise. Prints figures, asserts nothing.
"""
import sys

if sys.implementation.name == "micropython":  # ------------------------- the device half
    try:
        ARGS  # the board's copy has it set first  # noqa: B018
    except NameError:
        ARGS = {"n": int(sys.argv[1]) if len(sys.argv) > 1 else 20}
    # <board>
    import asyncio
    from time import ticks_diff, ticks_ms

    from firmware.device import Device

    class _Ticker:
        def __init__(self):
            self.reset()

        def reset(self):
            self.worst = 0
            self.turns = 0
            self.last = self.t0 = ticks_ms()

        async def run(self):
            while True:
                await asyncio.sleep_ms(10)
                now = ticks_ms()
                gap = ticks_diff(now, self.last)
                self.last = now
                self.turns += 1
                if gap > self.worst:
                    self.worst = gap

        def report(self, phase, extra=0):
            # STALL <phase> <stall ms> <longest interval ms> <ticker turns> <phase ms> <extra>
            print("STALL %s %d %d %d %d %d" % (phase, self.worst - 10, self.worst, self.turns, ticks_diff(ticks_ms(), self.t0), extra))

    async def _until(cond):
        while not cond():
            await asyncio.sleep_ms(5)

    async def _stall(n):
        dev = Device().aio()
        t = _Ticker()
        asyncio.create_task(t.run())
        await asyncio.sleep_ms(50)
        t.reset()
        dev.start()
        await _until(lambda: dev.up)
        t.report("connect")
        await asyncio.sleep_ms(1000)  # what connecting queued (OTA inform, NTP) goes out
        t.reset()
        print("STALL inject closed")
        await _until(lambda: not dev.up)
        await _until(lambda: dev.up)
        t.report("closed")
        await asyncio.sleep_ms(500)
        t.reset()
        acked = 0
        for i in range(n):
            if await dev.publish("user/update", '{"stall": %d}' % i):
                acked += 1
        t.report("qos1", acked)
        print("STALL end")

    asyncio.run(_stall(ARGS["n"]))
    # </board>
    sys.exit(0)

import os  # noqa: E402  ---------------------------------------------- the host half
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from tools.bench.common import figures, parser, say  # noqa: E402

PHASES = (("connect", "power-up to connected"), ("closed", "CLOSED until connected again"),
          ("qos1", "QoS 1 publishes, each awaited to its PUBACK"))
TARGET_MS = 20


def parse(lines):
    out = {}
    for line in lines:
        m = re.search(r"STALL (\w+) (-?\d+) (\d+) (\d+) (\d+) (\d+)", line)
        if m:
            stall, gap, turns, ms, extra = (int(x) for x in m.groups()[1:])
            out[m.group(1)] = {"stall_ms": stall, "interval_ms": gap, "turns": turns, "ms": ms, "acked": extra}
    return out


def unix(n):
    from tools.bench.connect import DELAYS
    from tools.harness.env import SimEnv

    with SimEnv(vm=dict(DELAYS), start_firmware=False, cfg={"wdt_ms": 0}) as env:
        fw = env.run_firmware(script=os.path.abspath(__file__), args=[str(n)])
        fw.wait_log("STALL connect", 120)
        fw.wait_log("STALL inject closed", 30)
        env.vm.inject("closed")
        fw.wait_log("STALL end", 120 + 5 * n)
        return parse(fw.lines)


def board(n):
    from tools.bench.board import IMAGE, Session
    from tools.bench.common import board_text, firmware_and_cloud
    from tools.board import kit as kitmod
    from tools.board.env import BoardEnv

    try:
        kit = kitmod.find(images=(IMAGE,))
    except kitmod.KitMissing as e:
        return {"skipped": str(e)}
    script = "import sys\nARGS = %r\n" % ({"n": n},) + board_text(os.path.abspath(__file__))
    cfg = {"wdt_ms": 0, "stats_interval": 0}
    with firmware_and_cloud() as (cloud, _):
        tmp = tempfile.mkdtemp(prefix="bench-stall-")
        try:
            flash = os.path.join(tmp, "flash.img")
            say("stall: deploying to the emulated Pico (%s) ..." % IMAGE)
            with BoardEnv(kit, IMAGE, cloud=cloud, cfg=cfg, fs=flash, run_main=False):
                pass
            with Session(kit, cloud, flash, cfg) as b:
                con = b.console
                mark = con.send(script)
                con.wait_for(lambda buf: b"STALL inject closed" in buf or None, mark, 300, what="the connect")
                b.vm.inject("closed")
                out, err = con.result(mark, timeout=300 + 10 * n, check=False)
            res = parse(out.splitlines())
            if err or "qos1" not in res:
                res["error"] = (err or out[-800:]).strip()[-800:]
            return {"image": IMAGE, "phases": res}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def rows(res):
    """(what, figure, target, met) for the table of make bench."""
    for where, key in (("unix port", "unix"), ("emulated Pico", "board")):
        r = res.get(key) or {}
        if r.get("skipped"):
            yield ("Stall, %s" % where, "skipped: %s" % r["skipped"], "", "")
            continue
        phases = r.get("phases") or {}
        if r.get("error") or phases.get("error"):
            yield ("Stall, %s" % where, "ERROR: %s" % (r.get("error") or phases["error"])[-200:].replace("\n", " "), "", "")
        for p, label in PHASES:
            f = phases.get(p)
            if f is None:
                continue
            extra = ", %d of %d acked, %.0f ms each" % (f["acked"], res["n"], f["ms"] / max(1, res["n"])) if p == "qos1" else ""
            yield ("Stall of a 10 ms ticker task, %s: %s" % (where, label),
                   "%d ms (longest interval %d ms over %d turns, %d ms%s)" % (f["stall_ms"], f["interval_ms"], f["turns"], f["ms"], extra),
                   "<= %d ms" % TARGET_MS, "**met**" if f["stall_ms"] <= TARGET_MS else "**NOT met**")


def main(argv=None):
    ap = parser(__doc__, "5 publishes", publishes=20)
    ap.add_argument("--no-board", action="store_true", help="the unix port only")
    a = ap.parse_args(argv)
    n = 5 if a.quick else a.publishes
    with figures(a.json, n=n) as res:
        say("stall: unix port ...")
        res["unix"] = {"phases": unix(n)}
        res["board"] = {"skipped": "--no-board"} if a.no_board else board(n)
        for row in rows(res):
            say("  %s: %s (target %s) %s" % row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
