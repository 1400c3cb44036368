"""The long run on the emulated Pico (issue 22): main.py from the board's flash (v1.28.0,
.mpy, mqtt flow with NTP; the board tier's config: the demo device, telemetry every second
and keepalive 60 s, otherwise the defaults, no watchdog) against an Air780EP (the family
that pushes downlinks of up to 4100 bytes), 4 KB downlinks from the cloud for --minutes
(wall clock; each sent once the firmware logged the one before, at most one per --every s)
while telemetry flows, then Ctrl-C and the heap as it is left.

    .venv/bin/python -m tools.board.longrun [--minutes 10] [--size 4096] [--every 2] [--image v1.28.0]
    make board BOARD_MINUTES=10

Passes (exit 0) when the firmware logged every downlink byte-exact and in order, the cloud
holds every QoS 1 telemetry seq, and the board printed no MemoryError or Traceback and never
rebooted. Prints the figures: downlinks, uplinks, the firmware's own counters, the live heap
and the largest free block after the run (gc.collect(); fragmentation shows there).
"""
import argparse
import json
import re
import sys
import time

from tools.bench.common import figures
from tools.board import kit as kitmod
from tools.board.env import BoardEnv
from tools.cloud.console import client as console_client


def payload(k, size):
    """Downlink k: exactly `size` printable bytes, its number first."""
    head = b'{"n": %d, "pad": "' % k
    return head + b"y" * (size - len(head) - 2) + b'"}'


def run(minutes, size, every, image, echo=None):
    kit = kitmod.find(images=(image,))
    res = {"minutes": minutes, "size": size, "every_s": every, "image": image}
    # SimEnv's config (telemetry every second), no watchdog, the link's counters each minute
    cfg = {"stats_interval": 60, "wdt_ms": 0}
    with BoardEnv(kit, image, cfg=cfg, personality="air780ep", stats=1, echo=echo) as b:
        con = b.console
        con.wait_log("link: mqtt -> up", timeout=300)
        console = console_client(b.cloud.info)
        sent = 0
        t0 = time.monotonic()
        ticks0 = b.pico.elapsed()
        try:
            # the next one once the firmware logged the last, and `every` s apart: the
            # emulator runs 6-8x slower than a Pico when busy, so a fixed pace could pile up
            while time.monotonic() - t0 < minutes * 60:
                due = time.monotonic() + every
                console.publish(b.topics["get"], payload(sent, size), qos=1)
                sent += 1
                while count(con, b.topics["get"], size) < sent and time.monotonic() < due + 60:
                    time.sleep(0.2)
                if re.search(r"MemoryError|Traceback", con.text()) or not b.pico.alive():
                    break
                time.sleep(max(0, due - time.monotonic()))
            # what was sent arrives: the last downlinks' wire time and processing
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and count(con, b.topics["get"], size) < sent:
                time.sleep(1)
        finally:
            console.disconnect()
            console.loop_stop()
        res["sent"] = sent
        res["board_s"] = round(b.pico.elapsed() - ticks0, 1)
        res["logged"], res["in_order"] = logged(con, b.topics["get"], size, sent)
        seqs = sorted({json.loads(p)["seq"] for t, p, q in b.uplinks()})
        res["uplinks"] = len(seqs)
        res["uplinks_missing"] = sorted(set(range(1, max(seqs) + 1)) - set(seqs)) if seqs else []
        stats = [ln for ln in con.lines() if " link: stats " in ln]
        res["link_stats"] = json.loads(stats[-1].split(" link: stats ", 1)[1]) if stats else None
        text = con.text()
        res["memory_errors"] = text.count("MemoryError")
        res["tracebacks"] = text.count("Traceback")
        res["resets"] = b.pico.resets()
        con.stop_main()
        con.raw()
        out = con.exec("import gc, micropython, sys\ngc.collect()\nprint(gc.mem_alloc(), gc.mem_free())\n"
                       "print(' '.join(sorted(m for m in sys.modules if m.startswith('firmware'))))\nmicropython.mem_info()")
        alloc, free = (int(x) for x in out.split()[:2])
        res["modules"] = out.splitlines()[1].split()  # what main.py left loaded
        m = re.search(r"max free sz: (\d+)", out)
        res["heap_after"] = {"alloc": alloc, "free": free, "max_free_block": int(m.group(1)) * 16 if m else None}
        con.friendly()
    res["passed"] = (res["logged"] == sent and res["in_order"] and not res["uplinks_missing"] and
                     not res["memory_errors"] and not res["tracebacks"] and res["resets"] == ["force: machine.reset()"])
    return res


def _downlinks(con, topic, size):
    pat = re.compile(r"app: downlink %s (\{\"n\": (\d+), \"pad\": \"y+\"\})$" % re.escape(topic))
    for ln in con.lines():
        m = pat.search(ln)
        if m and len(m.group(1)) == size:
            yield int(m.group(2))


def count(con, topic, size):
    return sum(1 for _ in _downlinks(con, topic, size))


def logged(con, topic, size, sent):
    """(downlinks logged byte-exact, whether in order 0..sent-1 without repeats)."""
    got = list(_downlinks(con, topic, size))
    return len(got), got == list(range(len(got)))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.board.longrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10, help="how long the downlinks flow (wall clock, default 10)")
    ap.add_argument("--size", type=int, default=4096, help="downlink bytes (the Air780EP pushes up to 4100)")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between downlinks")
    ap.add_argument("--image", default="v1.28.0", help="the Pico image: v1.28.0 (default) or v1.26.1")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the board's console")
    a = ap.parse_args(argv)
    try:
        with figures(a.json) as res:
            res.update(run(a.minutes, a.size, a.every, a.image, echo=print if a.verbose else None))
    except kitmod.KitMissing as e:
        print("longrun: %s" % e, file=sys.stderr)
        return 2
    h = res["heap_after"]
    print("longrun: %.0f min (%.0f s on the board's clock), %d downlinks of %d B sent, %d logged byte-exact%s; "
          "%d QoS 1 uplinks, missing %s; MemoryError %d, Traceback %d, reboots %s" % (
              res["minutes"], res["board_s"], res["sent"], res["size"], res["logged"], "" if res["in_order"] else " (NOT in order)",
              res["uplinks"], res["uplinks_missing"][:10] or "none", res["memory_errors"], res["tracebacks"],
              res["resets"][1:] or "none"))
    print("longrun: heap after the run (gc.collect()): %d B in use, %d B free, largest free block %s B; link %s" % (
        h["alloc"], h["free"], h["max_free_block"], json.dumps(res["link_stats"])))
    print("longrun: firmware modules loaded: %s" % " ".join(res["modules"]))
    print("longrun: %s" % ("PASS" if res["passed"] else "FAIL"))
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
