# The durable outbox's flash wear (firmware/journal.py, "outbox_persist": true): bytes written
# to flash per QoS 1 message, files made and deleted, and the time per message, against a
# journal that rewrites the whole queue as one file on every change (what an outbox saved
# as a JSON file would do).
#   MICROPYPATH=. .venv/bin/micropython -m tools.bench.journal     (or python -m tools.bench.journal)
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


def main():
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
