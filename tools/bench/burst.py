"""Downlink burst through the whole app (issue #19): the cloud publishes N downlinks back to
back while the device sends its own QoS 1 telemetry; the virtual module carries them over a
UART paced at --baud; the figure is how many the app handed to its handler, each once.

    .venv/bin/python -m tools.bench.burst [--cases 400x64,300x400] [--baud 115200] [--json FILE]

Each case is N downlinks of SIZE bytes (short messages, then ones of a few hundred bytes).

Host side only (CPython): the local cloud, a virtual Air724 and the real main.py under
micropython (the app logs one line per downlink: that is what is counted, by sequence
number). Target: every downlink delivered, none twice.
"""
import json
import re
import time

from tools.bench.common import figures, firmware_and_cloud, parser, say
from tools.cloud import console
from tools.harness.env import SimEnv

SEQ = re.compile(r"downlink \S+/user/get burst (\d+) ")


def delivered(lines):
    return [int(m.group(1)) for m in (SEQ.search(x) for x in lines) if m]


def main():
    args = parser(__doc__, "100 downlinks of 64 bytes", cases="400x64,300x400", baud=115200).parse_args()
    cases = [(100, 64)] if args.quick else [tuple(int(x) for x in c.split("x")) for c in args.cases.split(",")]
    with figures(args.json, baud=args.baud, cases=[]) as out, firmware_and_cloud() as (cloud, mpy_dir):
        for n, size in cases:
            res = {"n": n, "size": size}
            out["cases"].append(res)
            burst(cloud, mpy_dir, n, size, args.baud, res)


def burst(cloud, mpy_dir, n, size, baud, res):
    # QoS 1 telemetry five times a second: the app's own PUBACK waits are the commands
    # during which the burst has to queue
    cfg = {"interval": 0.2, "qos": 1, "ntp": False, "log_level": "info", "stats_interval": 1}
    with SimEnv(cloud=cloud, mpy_dir=mpy_dir, vm={"baud": baud}, cfg=cfg) as env:
        env.firmware.wait_log("link: mqtt -> up", timeout=60)
        topic = env.topics["get"]
        pad = b"x" * max(0, size - 16)
        c = console.client(cloud.info)
        t0 = time.time()
        try:
            for i in range(n):  # back to back, one connection: a real burst at the broker
                c.publish(topic, b"burst %05d " % i + pad, qos=1).wait_for_publish(10)
        finally:
            c.disconnect()
            c.loop_stop()
        sent_s = time.time() - t0
        wire_s = n * (len(b'\r\n+MSUB: "",NNN byte,\r\n') + len(topic) + size) * 10.0 / baud
        deadline = time.time() + max(30.0, 4 * wire_s)
        last, still = -1, time.time()
        while time.time() < deadline:  # until all came, or 10 s without progress
            got = len(set(delivered(env.firmware.lines)))
            if got >= n:
                break
            if got != last:
                last, still = got, time.time()
            elif time.time() - still > 10:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # one more "link: stats" line
        seqs = delivered(env.firmware.lines)
        stats = [json.loads(x.split("stats ", 1)[1]) for x in env.firmware.lines if "link: stats {" in x]
        last = stats[-1] if stats else {}
        res.update(sent=n, at_module=env.vm.stats.get("downlinks"), at_link=last.get("downlinks"),
                   dropped=last.get("downlinks_dropped"), delivered=len(set(seqs)), duplicates=len(seqs) - len(set(seqs)),
                   in_order=seqs == sorted(seqs), publish_s=round(sent_s, 2),
                   wire_s=round(wire_s, 2), uplinks=len(env.uplinks()))
        say("burst: %(sent)d downlinks of %(size)d bytes, %(at_module)s reached the module, %(at_link)s the link (%(dropped)s dropped), %(delivered)d delivered, %(duplicates)d twice, in order: "
            "%(in_order)s (wire time %(wire_s)s s; %(uplinks)d QoS 1 uplinks meanwhile)" % res)


if __name__ == "__main__":
    main()
