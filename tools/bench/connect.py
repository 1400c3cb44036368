"""Time to connected (issue #9, figure 4): power-up to subscribed, both flows.

    .venv/bin/python -m tools.bench.connect [--runs 3] [--flows mqtt,http] [--json FILE]

The real main.py, compiled with mpy-cross as a board runs it, under micropython against the
local cloud and a virtual Air724 with a real module's reply delays (DELAYS below). Timed
from the spawn of the interpreter (power-up) to the log line `link: mqtt -> up`, which the
link prints right after SUBACK. The firmware's overhead is that total minus the sum of the
delays the module was told to take (each command's reply delay, the bearer, TCP/TLS connect,
HTTP, CONNACK, SUBACK). Best of --runs. The module's log, timed, splits the total into:
startup (spawn -> first AT byte in), module busy (command in -> its replies out, incl. the
configured delays and the broker/HTTP round trips) and host turnaround (a reply out -> the
next command in: the firmware's own time between commands).
"""
import sys
import time

from tools.bench.common import figures, firmware_and_cloud, parser, say
from tools.bench.wire import TimedLog
from tools.harness.env import SimEnv

# a real Air724 on a real network: TCP/TLS connect ~1.4 s, an HTTPS request 0.5-1 s,
# CONNACK/SUBACK one round trip, the bearer a fraction of a second, ~10 ms per reply
DELAYS = {"connect_delay": 1.4, "http_delay": 0.7, "connack_delay": 0.15, "suback_delay": 0.15,
          "bearer_delay": 0.5, "reply_delay": 0.01}


def delay_sum(commands, flow):
    """What the module was told to wait, given the commands it received."""
    d = DELAYS
    n = len(commands)
    total = n * d["reply_delay"]
    total += sum(d["reply_delay"] for c in commands if c.upper().startswith("AT+HTTPDATA"))  # DOWNLOAD and OK
    total += sum(d["bearer_delay"] for c in commands if c.upper().startswith("AT+SAPBR=1,"))
    total += sum(d["connect_delay"] for c in commands if c.upper().startswith(("AT+MIPSTART", "AT+SSLMIPSTART")))
    total += sum(d["connack_delay"] for c in commands if c.upper().startswith("AT+MCONNECT"))
    total += sum(d["suback_delay"] for c in commands if c.upper().startswith("AT+MSUB"))
    total += sum(d["http_delay"] for c in commands if c.upper().startswith("AT+HTTPACTION"))
    return total


def one_run(cloud, mpy_dir, flow):
    stamps = []
    env = SimEnv(flow=flow, cloud=cloud, vm=dict(DELAYS), mpy_dir=mpy_dir, start_firmware=False,
                 cfg={"interval": 3600, "stats_interval": 0},
                 echo=lambda line: stamps.append((time.monotonic(), line)))
    env.start()
    try:
        env.vm.log = TimedLog()
        t0 = time.monotonic()
        fw = env.run_firmware()
        fw.wait_log("link: mqtt -> up", 60)
        t_up = next(t for t, line in stamps if "link: mqtt -> up" in line)
        total = t_up - t0
        ev = list(env.vm.log.timed)
        # the commands up to subscribed (the firmware goes on sending after it): count the
        # command ends (CR) the module took in before that moment
        crs = sum(env.vm.log[i][1].count(b"\r") for i, (t, d, n) in enumerate(ev) if d == "rx" and t <= t_up)
        cmds = list(env.vm.commands)[:crs]
        last_sub = max((i for i, c in enumerate(cmds) if c.upper().startswith("AT+MSUB")), default=len(cmds) - 1)
        cmds = cmds[:last_sub + 1]  # an uplink sent in the same instant is not part of connecting
        # split: startup, host turnaround (reply out -> next command in), module busy
        first_rx = next(t for t, d, n in ev if d == "rx")
        host = 0.0
        prev = None
        for t, d, n in ev:
            if t > t_up:
                break
            if d == "rx" and prev is not None and prev[1] == "tx":
                host += max(0.0, t - prev[0])
            prev = (t, d, n)
        delays = delay_sum(cmds, flow)
        return {"total_s": total, "delays_s": delays, "overhead_s": total - delays,
                "overhead_frac": (total - delays) / delays, "commands": len(cmds),
                "startup_s": first_rx - t0, "host_turnaround_s": host,
                "host_per_command_ms": 1e3 * host / max(1, len(cmds) - 1),
                "module_s": total - (first_rx - t0) - host, "command_list": cmds}
    finally:
        env.stop()


def findings(res):
    L = ["Module delays used: %s. Best run of each flow:" % ", ".join("%s=%g s" % kv for kv in DELAYS.items()), "",
         "| | mqtt | http |", "|---|---|---|"]

    def row(label, f):
        L.append("| %s | %s | %s |" % (label, *(f(res[fl]) if fl in res else "" for fl in ("mqtt", "http"))))

    row("power-up to subscribed", lambda r: "%.3f s" % r["total_s"])
    row("sum of the module's configured delays", lambda r: "%.3f s" % r["delays_s"])
    row("firmware overhead (total - delays)", lambda r: "%.3f s (%.1f%%)" % (r["overhead_s"], 100 * r["overhead_frac"]))
    row("startup: spawn -> first AT command (interpreter, imports, config, UART)", lambda r: "%.3f s" % r["startup_s"])
    row("host turnaround: replies out -> next command in (sum)", lambda r: "%.3f s (%.1f ms per command)" % (r["host_turnaround_s"], r["host_per_command_ms"]))
    row("module busy (delays + broker/TLS/HTTP round trips)", lambda r: "%.3f s" % r["module_s"])
    row("AT commands sent", lambda r: "%d" % r["commands"])
    for fl in ("mqtt", "http"):
        if fl in res:
            L.append("")
            L.append("Commands, flow %s: `%s`" % (fl, "`, `".join(c if not c.upper().startswith("AT+MCONFIG") else "AT+MCONFIG=..."
                                                               for c in res[fl]["command_list"])))
    return "\n".join(L)


def main(argv=None):
    ap = parser(__doc__, "one run per flow", runs=3, flows="mqtt,http")
    a = ap.parse_args(argv)
    if a.quick:
        a.runs = 1
    with figures(a.json, delays=DELAYS) as result, firmware_and_cloud() as (cloud, mpy_dir):
        for flow in a.flows.split(","):
            best = None
            for _ in range(a.runs):
                r = one_run(cloud, mpy_dir, flow)
                say("connect: flow %s: %.3f s to subscribed, delays %.3f s, overhead %.3f s (%.1f%%), startup %.3f s, "
                    "host turnaround %.3f s, %d commands" % (flow, r["total_s"], r["delays_s"], r["overhead_s"],
                                                             100 * r["overhead_frac"], r["startup_s"], r["host_turnaround_s"], r["commands"]))
                if best is None or r["total_s"] < best["total_s"]:
                    best = r
            result[flow] = best
        result["findings"] = findings(result)
        say(result["findings"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
