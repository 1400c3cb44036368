# The durable outbox's flash wear (firmware/journal.py, "outbox_persist": true): bytes written
# to flash per QoS 1 message, files made and deleted, and the time per message, against a
# journal that rewrites the whole queue as one file on every change (what an outbox saved
# as a JSON file would do).
#   MICROPYPATH=. .venv/bin/micropython -m tools.bench.journal     (or python -m tools.bench.journal)
#   .venv/bin/python -m tools.bench.journal --board                 (the emulated Pico: erases, programs)
# The steady state of a link slower than the app: `PENDING` messages wait, each new one is
# queued (a put record) and the oldest gets its PUBACK (a done record). Counted: the bytes
# the firmware hands to the file system (what a flash filesystem then writes, plus its own
# metadata: littlefs adds a commit per flush, not measured on the unix port). The times are
# the host disk's: the journal flushes every record (an fsync on the unix port), the
# rewrite baseline does not.
import json
import os
import sys

from firmware.outbox import Outbox
from firmware.port import ticks_diff, ticks_ms

N = 1000
PENDING = 10
TOPIC = "/a1DemoPk001/demo-device-1/user/update"
DIR = "/tmp/bench-journal-%d" % ticks_ms()


def clear():
    """DIR gone (it holds files only)."""
    if DIR.rsplit("/", 1)[1] in os.listdir("/tmp"):
        [os.remove(DIR + "/" + n) for n in os.listdir(DIR)]
        os.rmdir(DIR)


def payload(i, size):
    head = '{"seq":%d,"uptime_s":%d,"pad":"' % (i, i * 10)
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def journaled(size):
    clear()
    ob = Outbox(PENDING + 1, "drop_oldest", DIR)
    j = ob.journal
    t0 = ticks_ms()
    for i in range(N):
        ob.put(TOPIC, payload(i, size))
        if len(ob) > PENDING:
            ob.pop()  # its PUBACK
    us = ticks_diff(ticks_ms(), t0) * 1000
    made = j.segments[-1][0]  # segments are numbered from 1 in a new folder
    left = len(os.listdir(DIR))
    j.close()
    clear()
    return j.written, made, made - left, us


def rewritten(size):
    """The naive durable queue: the whole list as JSON, written to a temp file and renamed,
    on every put and every PUBACK."""
    clear()
    os.mkdir(DIR)
    q = []
    written = 0
    t0 = ticks_ms()
    for i in range(N):
        for change in (0, 1):
            if change:
                if len(q) <= PENDING:
                    continue
                q.pop(0)
            else:
                q.append((TOPIC, payload(i, size)))
            text = json.dumps(q)
            with open(DIR + "/q.tmp", "w") as f:
                f.write(text)
            os.rename(DIR + "/q.tmp", DIR + "/q.json")
            written += len(text)
    us = ticks_diff(ticks_ms(), t0) * 1000
    clear()
    return written, us


# ---------------------------------------------------------------------- on the emulated Pico
# python -m tools.bench.journal --board: the same steady state on the real rp2 port, its
# littlefs on the emulated flash, counted by the emulator: 4 KiB sector erases and page
# programs (the wear a flash chip sees) per message, for the journal and for the rewrite.
BOARD_N = 200
BOARD_SETUP = """
import os, json
from firmware.outbox import Outbox
def clear(d):
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)
    except OSError:
        pass
clear("/bj")
def payload(i, size):
    head = '{"seq":%d,"uptime_s":%d,"pad":"' % (i, i * 10)
    return head + "x" * max(0, size - len(head) - 2) + '"}'
"""
BOARD_JOURNAL = """
ob = Outbox(%d, "drop_oldest", "/bj")
for i in range(%d):
    ob.put(%r, payload(i, %d))
    if len(ob) > %d:
        ob.pop()
ob.journal.close()
print("WRITTEN", ob.journal.written)
"""
BOARD_REWRITE = """
os.mkdir("/bj")
q = []
for i in range(%d):
    for change in (0, 1):
        if change:
            if len(q) <= %d:
                continue
            q.pop(0)
        else:
            q.append((%r, payload(i, %d)))
        with open("/bj/q.tmp", "w") as f:
            f.write(json.dumps(q))
        os.rename("/bj/q.tmp", "/bj/q.json")
print("WRITTEN 0")
"""


def board_main():
    import time

    from tools.board import kit
    from tools.board.env import BoardEnv

    def ops_now(pico, after):
        while not pico.samples or pico.samples[-1][0] < after:  # a sample taken after `after`
            time.sleep(0.1)
        return pico.flash_ops

    with BoardEnv(kit.find(images=("v1.28.0",)), "v1.28.0", run_main=False, stats=0.2) as b:
        con, pico = b.console, b.pico
        con.raw()
        con.exec(BOARD_SETUP)
        print("journal benchmark on the emulated Pico (MicroPython v1.28.0, littlefs): %d QoS 1 messages, "
              "%d waiting for their PUBACK, topic %d B" % (BOARD_N, PENDING, len(TOPIC)))
        for size in (64, 512):
            rows = []
            for code in (BOARD_JOURNAL % (PENDING + 1, BOARD_N, TOPIC, size, PENDING),
                         BOARD_REWRITE % (BOARD_N, PENDING, TOPIC, size)):
                e0, p0 = ops_now(pico, time.monotonic())
                con.exec(code, timeout=1800)
                e1, p1 = ops_now(pico, time.monotonic())
                con.exec('clear("/bj")')
                rows.append(((e1 - e0) / BOARD_N, (p1 - p0) / BOARD_N))
            (je, jp), (re_, rp) = rows
            print("board payload %4d B  journal %.2f sector erases, %.2f page programs per message   "
                  "rewrite-the-queue %.2f sector erases, %.2f page programs per message" % (size, je, jp, re_, rp))
    return 0


def main():
    if "--board" in sys.argv:
        return board_main()
    impl = sys.implementation.name
    print("journal benchmark on %s %s: %d QoS 1 messages, %d waiting for their PUBACK at any time, topic %d B"
          % (impl, ".".join(str(v) for v in sys.implementation.version[:3]), N, PENDING, len(TOPIC)))
    for size in (64, 512):
        w, made, deleted, us = journaled(size)
        rw, rus = rewritten(size)
        print("payload %4d B  journal %.1f bytes written per message (record %d + done 9), %d segment files made, "
              "%d deleted, %.0f us/message   rewrite-the-queue %.1f bytes written per message, %.0f us/message   "
              "ratio %.1fx" % (size, w / N, 13 + len(TOPIC) + size, made, deleted, us / N, rw / N, rus / N, rw / w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
