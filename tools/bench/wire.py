"""Wire efficiency of publishing (issue #9, figure 3).

    .venv/bin/python -m tools.bench.wire [--baud 115200] [--puback-delay 0.05]
                                         [--n0 200] [--n1 100] [--runs 3] [--json FILE]

Host side (CPython): the local cloud and a virtual Air724 whose UART is paced at baud/10
bytes/s both ways; this same file then runs under micropython as the driver: the firmware's
own Air72x driver brings the module up and aliyun.connect() opens the bearer, connects and
subscribes; then, on the host's word, N publishes back to back with Air72x.mqtt_publish()
(QoS 0, then QoS 1), timed with ticks_ms. The host reads the exact bytes written and read
in that window from the module's log, and the limit is

    T_limit = (bytes host->module + bytes module->host) / (baud/10)  [+ N x puback_delay]

(the two directions never overlap within one command: the module answers a complete line).
Figure: rate / limit rate = T_limit / T_measured (best of --runs).

For the breakdown the driver also runs (a) the firmware again with its waits counted
(AT._wait: the engine's 1 ms sleep per empty read; UART reads; time before the command is
written, i.e. poll() + building the command), and (b) a reference: the same command bytes
written on the same socket by a minimal loop that blocks in select.poll() until the final
line; what the virtual module itself costs shows there.
"""
import sys

if sys.implementation.name == "micropython":  # ------------------------------ driver
    import json
    import select
    from time import ticks_diff, ticks_us

    from firmware import aliyun, config
    from firmware.air72x import Air72x
    from firmware.uart import open_uart

    def payload(i):
        return json.dumps({"seq": i, "uptime_s": 12})

    def fw_run(modem, topic, qos, n, seq0):
        t0 = ticks_us()
        for i in range(n):
            modem.mqtt_publish(topic, payload(seq0 + i), qos)
        return ticks_diff(ticks_us(), t0)

    def fw_instrumented(modem, topic, qos, n, seq0):
        at = modem.at
        uart = at.uart
        st = {"waits": 0, "wait_us": 0, "reads": 0, "empty_reads": 0, "pre_write_us": 0, "post_write_us": 0}
        w = at._wait
        r = uart.readinto
        wr = uart.write
        mark = [0]

        def wait():
            t = ticks_us()
            w()
            st["waits"] += 1
            st["wait_us"] += ticks_diff(ticks_us(), t)

        def readinto(buf, nbytes=None):
            k = r(buf, nbytes)
            st["reads"] += 1
            if not k:
                st["empty_reads"] += 1
            return k

        def write(data):
            st["pre_write_us"] += ticks_diff(ticks_us(), mark[0])
            k = wr(data)
            mark[0] = ticks_us()
            return k

        at._wait = wait
        uart.readinto = readinto
        uart.write = write
        t0 = ticks_us()
        try:
            for i in range(n):
                mark[0] = ticks_us()
                modem.mqtt_publish(topic, payload(seq0 + i), qos)
                st["post_write_us"] += ticks_diff(ticks_us(), mark[0])
        finally:
            del at._wait
            del uart.readinto
            del uart.write
        st["total_us"] = ticks_diff(ticks_us(), t0)
        return st

    def ref_run(modem, topic, qos, n, seq0):
        """The same bytes, the least a host can do: write, block in poll() until the end."""
        from firmware.air72x import escape

        sock = modem.at.uart._sock
        p = select.poll()
        p.register(sock, select.POLLIN)
        end = b"PUBACK\r\n" if qos else b"OK\r\n"
        buf = bytearray(256)
        t0 = ticks_us()
        for i in range(n):
            cmd = b'AT+MPUB="' + topic.encode() + b'",%d,0,"' % qos + escape(payload(seq0 + i).encode()) + b'"\r'
            sock.send(cmd)
            got = b""
            while not got.endswith(end):
                p.poll(1000)
                try:
                    k = sock.readinto(buf)
                except OSError:
                    k = 0
                if k:
                    got += bytes(buf[:k])
        return ticks_diff(ticks_us(), t0)

    def driver():
        cfg = config.load()
        modem = Air72x(open_uart(cfg["uart"]))
        modem.start()
        topics = aliyun.Topics(cfg["product_key"], cfg["device_name"])
        aliyun.connect(modem, cfg, topics)
        modem.poll()
        print("READY")
        seq = 1
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            w = line.split()
            if w[0] == "quit":
                break
            kind, qos, n = w[0], int(w[1]), int(w[2])
            if kind == "fw":
                us = fw_run(modem, topics.update, qos, n, seq)
                print("RESULT " + json.dumps({"us": us}))
            elif kind == "instr":
                print("RESULT " + json.dumps(fw_instrumented(modem, topics.update, qos, n, seq)))
            elif kind == "ref":
                print("RESULT " + json.dumps({"us": ref_run(modem, topics.update, qos, n, seq)}))
            seq += n

    driver()
    sys.exit(0)

# ---------------------------------------------------------------------------- host side
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from tools.bench.common import figures, parser, say  # noqa: E402
from tools.proc import ROOT, micropython_bin  # noqa: E402
from tools.harness.env import SimEnv  # noqa: E402


class TimedLog(list):
    """The module's log (a list of (direction, bytes)) that also keeps when each entry came:
    "rx" entries are appended once the paced bytes have fully arrived, "tx" entries just
    before they are paced out."""

    def __init__(self):
        super().__init__()
        self.timed = []
        self._lock = threading.Lock()

    def append(self, item):
        with self._lock:
            self.timed.append((time.monotonic(), item[0], len(item[1])))
            super().append(item)


def split_time(events, bps):
    """Where the time of a window of timed module I/O went, in seconds:
    wire (bytes at bps), module (last command byte in -> first reply byte out), ack (a reply
    line after another one: broker round trip + PUBACK delay), host (last reply byte out ->
    first byte of the next command)."""
    out = {"wire": 0.0, "module": 0.0, "ack": 0.0, "host": 0.0}
    prev = None
    for t, d, n in events:
        dur = n / bps
        out["wire"] += dur
        if prev is not None:
            pt, pd, pn = prev
            if d == "rx" and pd == "tx":
                out["host"] += max(0.0, (t - dur) - (pt + pn / bps))
            elif d == "tx" and pd == "rx":
                out["module"] += max(0.0, t - pt)
            elif d == "tx" and pd == "tx":
                out["ack"] += max(0.0, t - (pt + pn / bps))
        prev = (t, d, n)
    return out


class Driver:
    def __init__(self, env):
        self.env = env
        self.proc = subprocess.Popen([micropython_bin(), os.path.abspath(__file__)], cwd=env.workdir,
                                     env=dict(os.environ, MICROPYPATH=ROOT), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._expect("READY")

    def _expect(self, prefix):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if line.startswith(prefix):
                return line
        raise RuntimeError("driver ended:\n" + "\n".join(self.lines[-20:]))

    def run(self, kind, qos, n):
        """(driver's result dict, bytes host->module, bytes module->host) for the window."""
        vm = self.env.vm
        i0 = len(vm.log)
        j0 = len(vm.log.timed)
        self.proc.stdin.write("%s %d %d\n" % (kind, qos, n))
        self.proc.stdin.flush()
        res = json.loads(self._expect("RESULT ")[7:])
        window = vm.log[i0:]
        res["events"] = vm.log.timed[j0:]
        out = sum(len(b) for d, b in window if d == "rx")
        back = sum(len(b) for d, b in window if d == "tx")
        return res, out, back

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def main(argv=None):
    ap = parser(__doc__, "fewer messages and runs", baud=115200, puback_delay=0.05, n0=200, n1=100, runs=3)
    a = ap.parse_args(argv)
    if a.quick:
        a.n0, a.n1, a.runs = 100, 40, 2
    bps = a.baud / 10.0
    vm = {"baud": a.baud, "puback_delay": a.puback_delay}
    with figures(a.json, baud=a.baud, puback_delay=a.puback_delay) as result, \
            SimEnv(flow="mqtt", tls=False, vm=vm, start_firmware=False) as env:
        env.vm.log = TimedLog()
        drv = Driver(env)
        try:
            for qos, n in ((0, a.n0), (1, a.n1)):
                best = None
                for _ in range(a.runs):
                    res, out, back = drv.run("fw", qos, n)
                    if best is None or res["us"] < best[0]["us"]:
                        best = (res, out, back)
                res, out, back = best
                t = res["us"] / 1e6
                wire_s = (out + back) / bps
                limit = wire_s + (n * a.puback_delay if qos else 0.0)
                ref = min((drv.run("ref", qos, n) for _ in range(a.runs)), key=lambda r: r[0]["us"])
                ins, iout, iback = drv.run("instr", qos, n)
                del ins["events"]
                split_fw = split_time(res.pop("events"), bps)
                split_ref = split_time(ref[0].pop("events"), bps)
                r = {
                    "n": n, "seconds": t, "rate": n / t, "bytes_out": out, "bytes_in": back,
                    "out_per_msg": out / n, "in_per_msg": back / n, "wire_s": wire_s, "limit_s": limit,
                    "limit_rate": n / limit, "fraction": limit / t,
                    "ref_seconds": ref[0]["us"] / 1e6, "ref_fraction": limit / (ref[0]["us"] / 1e6),
                    "instr": ins, "split": split_fw, "split_ref": split_ref,
                }
                result["qos%d" % qos] = r
                say("wire: QoS %d: %d msgs in %.3f s = %.1f msg/s; limit %.3f s (%d+%d B/msg on the wire%s) = %.1f msg/s -> %.0f%%;"
                    " reference loop %.3f s (%.0f%%)" % (qos, n, t, n / t, limit, out / n, back / n,
                                                         ", + %g s PUBACK delay" % a.puback_delay if qos else "", n / limit,
                                                         100 * limit / t, ref[0]["us"] / 1e6, 100 * r["ref_fraction"]))
                say("      instrumented: %s" % json.dumps(ins))
            result["findings"] = findings(result, a)
            say(result["findings"])
        finally:
            drv.close()
    return 0


def findings(res, a):
    L = ["At %d baud a byte takes %.1f us on the wire. Per message (best of %d runs; the instrumented run is a separate pass):" % (
        a.baud, 1e6 / (a.baud / 10.0), a.runs), "",
        "| | QoS 0 | QoS 1 |", "|---|---|---|"]
    q0, q1 = res.get("qos0"), res.get("qos1")

    def row(label, f):
        L.append("| %s | %s | %s |" % (label, f(q0) if q0 else "", f(q1) if q1 else ""))

    row("measured per message", lambda r: "%.2f ms" % (1e3 * r["seconds"] / r["n"]))
    row("wire limit per message (bytes + PUBACK delay)", lambda r: "%.2f ms" % (1e3 * r["limit_s"] / r["n"]))
    row("bytes host->module / module->host", lambda r: "%.0f / %.0f" % (r["out_per_msg"], r["in_per_msg"]))
    row("fraction of the limit (firmware)", lambda r: "%.0f%%" % (100 * r["fraction"]))
    row("reference loop (same bytes, blocking poll)", lambda r: "%.2f ms = %.0f%%" % (1e3 * r["ref_seconds"] / r["n"], 100 * r["ref_fraction"]))
    row("firmware minus reference per message", lambda r: "%.2f ms" % (1e3 * (r["seconds"] - r["ref_seconds"]) / r["n"]))
    for k, label in (("wire", "module log: bytes on the wire"), ("module", "module log: module turnaround (command in -> reply out)"),
                     ("ack", "module log: PUBACK wait (broker round trip + PUBACK delay)"),
                     ("host", "module log: host turnaround (reply out -> next command in)")):
        row(label + " (reference)", lambda r, k=k: "%.2f ms (%.2f ms)" % (1e3 * r["split"][k] / r["n"], 1e3 * r["split_ref"][k] / r["n"]))
    row("instrumented: before the write (poll() + building the command)", lambda r: "%.0f us" % (r["instr"]["pre_write_us"] / r["n"]))
    row("instrumented: after the write until the final line", lambda r: "%.2f ms" % (r["instr"]["post_write_us"] / r["n"] / 1e3))
    row("instrumented: 1 ms idle sleeps (AT._wait) per message", lambda r: "%.1f (%.2f ms)" % (
        r["instr"]["waits"] / r["n"], r["instr"]["wait_us"] / r["n"] / 1e3))
    row("instrumented: UART reads per message (empty)", lambda r: "%.1f (%.1f)" % (r["instr"]["reads"] / r["n"], r["instr"]["empty_reads"] / r["n"]))
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
