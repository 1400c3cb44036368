"""Soak: the real firmware (main.py under `micropython`) against the virtual Air724 and the
local cloud, with randomised faults, until N telemetry messages went through (issue #6).

    .venv/bin/python -m tools.harness.soak --messages 10000 --seed 1 --interval 0.03

What it does, in a loop until the cloud holds seq >= N and every fault kind was injected
at least --min-each times: wait a random gap (the firmware keeps publishing QoS 1
telemetry every --interval s), inject one fault picked at random (seeded) from FAULTS, wait
until the link recovered (the cloud receives a message created after the fault: a seq
higher than the highest it held at injection + 2), then send one QoS 1 downlink and wait for
the firmware to log it. At the end it reads the firmware's own counters (the "link: stats"
log line, Link.stats()) and the cloud's record, and prints the table:
messages published (seq 1..N), delivered at the broker, lost, duplicated (at-least-once
after a lost PUBACK), downlinks sent/received, faults injected by kind, recoveries, and the
recovery time (median, p95, max) both as the harness saw it (fault -> first fresh uplink)
and as the firmware measured it (link down -> up again).

Exit status 0 when nothing was lost, every fault recovered, every downlink arrived and no
Traceback appeared in the firmware log. --json FILE writes the figures for tests.
"""
import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import sys
import threading
import time

from tools.harness.env import SimEnv

FAULTS = ("closed", "pdp_loss", "reboot", "power_cycle", "garbage", "drop_bytes", "mute",
          "slow", "sim_removed", "broker_restart", "broker_crash", "kick")
# faults in whose window the local broker may lose a message it already PUBACKed (SOAK.md)
BROKER_SIDE = ("broker_restart", "broker_crash", "kick")
PDP_URCS = ("+PDP: DEACT", "+PDP DEACT", "+CGEV: NW PDN DEACT 1", "+SAPBR 1: DEACT")


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, (len(v) * p + 99) // 100 - 1))]


def cloud_seqs(env):
    out = []
    for _t, payload, _q in env.uplinks():
        try:
            out.append(json.loads(payload)["seq"])
        except (ValueError, KeyError, TypeError):
            pass
    return out


_SEQ_IN_MPUB = re.compile(rb"\\22seq\\22: (\d+)")


def pubacked(vm, seqs):
    """Of `seqs`, those whose AT+MPUB the module answered with PUBACK (read from the virtual
    module's UART log): the broker acknowledged them, so the firmware was right to let
    them go. A seq missing at the cloud although PUBACKed was lost on the broker's side."""
    want = set(seqs)
    out = set()
    cur = None
    for d, data in list(vm.log):
        if d == "rx" and b"AT+MPUB" in data:
            m = _SEQ_IN_MPUB.search(data)
            cur = int(m.group(1)) if m else None
        elif d == "tx" and cur in want and b"PUBACK" in data:
            out.add(cur)
    return out


class Soak:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.injected = {}
        self.recovered = {}
        self.unrecovered = []
        self.harness_ms = []
        self.downlinks_sent = 0
        self.downlinks_lost = []
        self.harness_errors = []
        self.log = (lambda s: print(s, flush=True)) if not args.quiet else (lambda s: None)

    def inject(self, env, kind):
        """Inject one fault; returns a thread still injecting it (broker restart) or None."""
        vm, rng = env.vm, self.rng
        self.injected[kind] = self.injected.get(kind, 0) + 1
        if kind == "closed":
            vm.closed()
        elif kind == "pdp_loss":
            vm.pdp_loss(down=rng.choice((0, 1, 3, 0.5)), urc=rng.choice(PDP_URCS))
        elif kind == "reboot":
            vm.reboot()
        elif kind == "power_cycle":
            vm.power_cycle()
        elif kind == "garbage":
            vm.garbage()
        elif kind == "drop_bytes":
            vm.drop_bytes(rng.randint(1, 40))
        elif kind == "mute":
            vm.mute(1, execute=rng.random() < 0.5)
        elif kind == "slow":
            vm.slow(round(rng.uniform(0.1, 0.8), 2))
            time.sleep(rng.uniform(1.0, 3.0))
            vm.slow(0)
        elif kind == "sim_removed":
            vm.sim_removed()
            time.sleep(rng.uniform(0.3, 3.0))
            vm.sim_inserted()
        elif kind in ("broker_restart", "broker_crash"):
            # in a thread: the control call can take long (it returns when the new broker
            # listens); the recovery time is measured from the injection either way
            t = threading.Thread(target=self._restart_broker, args=(env, kind), daemon=True)
            t.start()
            return t
        elif kind == "kick":
            env.cloud.kick(env.device["productKey"], env.device["deviceName"])
        return None

    def _restart_broker(self, env, kind):
        try:
            env.cloud.restart_broker(crash=kind == "broker_crash")
        except Exception as e:  # a harness/cloud problem, not the firmware's
            self.harness_errors.append("%s: %r" % (kind, e))

    @contextlib.contextmanager
    def keep_cloud_log(self, env):
        """--cloud-log: copy the local cloud's log before its state dir goes, however the run
        ends (a post-mortem of the broker's side)."""
        try:
            yield
        finally:
            if self.a.cloud_log:
                shutil.copyfile(os.path.join(env.cloud.state_dir, "cloud.log"), self.a.cloud_log)

    def next_kind(self, plan):
        if plan:
            return plan.pop(0)
        return self.rng.choice(self.kinds)

    def run(self):
        a = self.a
        self.kinds = [k for k in FAULTS if k in a.faults]
        cfg = {"interval": a.interval, "outbox": a.outbox, "backoff_min_ms": a.backoff_min,
               "backoff_max_ms": a.backoff_max, "stats_interval": 2, "keepalive": 60}
        started = time.monotonic()
        with SimEnv(flow=a.flow, cfg=cfg, vm={"seed": a.seed}) as env, self.keep_cloud_log(env):
            fw = env.firmware
            fw.wait_log("link: mqtt -> up", timeout=60)
            plan = []
            for _ in range(a.min_each):
                p = list(self.kinds)
                self.rng.shuffle(p)
                plan += p
            k = 0
            deadline = started + a.max_seconds
            while time.monotonic() < deadline:
                seqs = cloud_seqs(env)
                top = max(seqs) if seqs else 0
                if top >= a.messages and not plan:
                    break
                time.sleep(self.rng.uniform(a.gap / 2, a.gap * 1.5))
                kind = self.next_kind(plan)
                seqs = cloud_seqs(env)
                top = max(seqs) if seqs else 0
                t0 = time.monotonic()
                errors = len(self.harness_errors)
                busy = None
                try:
                    busy = self.inject(env, kind)
                except Exception as e:  # a harness/cloud problem, not the firmware's
                    self.harness_errors.append("%s: %r" % (kind, e))
                try:
                    env.wait_uplink(lambda p, m=top: json.loads(p)["seq"] > m + 2, timeout=a.recover_timeout)
                    ms = int((time.monotonic() - t0) * 1000)
                except TimeoutError:
                    ms = None
                if busy is not None:
                    busy.join(90)
                if len(self.harness_errors) > errors:
                    # the cloud's control call failed (e.g. restart_broker hanging under load):
                    # the broker's state is unknown, so this round is not judged
                    self.log("%7.1f s  fault %-14s harness error: %s" % (time.monotonic() - started, kind, self.harness_errors[-1]))
                    continue
                if ms is None:
                    self.unrecovered.append(kind)
                else:
                    self.harness_ms.append(ms)
                    self.recovered[kind] = self.recovered.get(kind, 0) + 1
                self.log("%7.1f s  fault %-14s recovered in %s  (cloud seq %d)" % (
                    time.monotonic() - started, kind, "%d ms" % ms if ms is not None else "NEVER", top))
                # a downlink while the link is up (after noise on the line has passed)
                end = time.monotonic() + 10
                while env.vm.drop and time.monotonic() < end:
                    time.sleep(0.02)
                k += 1
                marker = "dl-%d-%s" % (k, kind)
                mark = len(fw.lines)
                env.cloud.publish(env.topics["get"], marker.encode(), 1)
                self.downlinks_sent += 1
                try:
                    fw.wait_log(lambda line, m=marker: " app: downlink " in line and line.endswith(" " + m),
                                timeout=a.recover_timeout, since=mark)
                except TimeoutError:
                    self.downlinks_lost.append(marker)
            # the end: everything queued is sent; read the firmware's counters
            seqs = cloud_seqs(env)
            n = max(seqs) if seqs else 0
            time.sleep(max(1.0, a.interval * 5))
            mark = len(fw.lines)
            stats_line = fw.wait_log("link: stats ", timeout=10, since=mark)
            fw_stats = json.loads(stats_line.split("link: stats ", 1)[1])
            seqs = cloud_seqs(env)
            text = fw.text()
            if a.log:
                with open(a.log, "w") as f:
                    f.write(text + "\n")
            self.elapsed = time.monotonic() - started
            return self.report(env, n, seqs, fw_stats, text)

    def report(self, env, n, seqs, fw_stats, text):
        upto = [s for s in seqs if s <= n]
        distinct = set(upto)
        missing = sorted(set(range(1, n + 1)) - distinct)
        acked = pubacked(env.vm, missing) if missing else set()
        lost = [x for x in missing if x not in acked]  # the firmware's fault
        broker_lost = [x for x in missing if x in acked]  # PUBACKed, then lost by the broker
        received = sum(1 for line in text.splitlines() if " app: downlink " in line and " dl-" in line)
        fw_rec = []
        for line in text.splitlines():
            if " link: up (after " in line:
                fw_rec.append(int(line.split(" link: up (after ", 1)[1].split(" ", 1)[0]))
        fw_rec = fw_rec[1:]  # the first is the initial connect, not a recovery
        r = {
            "messages": n,
            "delivered": len(distinct),
            "lost": len(lost),
            "lost_seqs": lost[:50],
            "broker_lost": len(broker_lost),
            "broker_lost_seqs": broker_lost[:50],
            "duplicates": len(upto) - len(distinct),
            "dropped_by_policy": fw_stats.get("dropped", 0),
            "downlinks_sent": self.downlinks_sent,
            "downlinks_received": received,
            "downlinks_lost": self.downlinks_lost,
            "faults": dict(self.injected),
            "faults_total": sum(self.injected.values()),
            "recovered": sum(self.recovered.values()),
            "unrecovered": self.unrecovered,
            "harness_recovery_ms": {"median": percentile(self.harness_ms, 50), "p95": percentile(self.harness_ms, 95),
                                    "max": max(self.harness_ms) if self.harness_ms else None},
            "firmware_recovery_ms": {"count": len(fw_rec), "median": percentile(fw_rec, 50),
                                     "p95": percentile(fw_rec, 95), "max": max(fw_rec) if fw_rec else None},
            "firmware_stats": fw_stats,
            "tracebacks": text.count("Traceback"),
            "harness_errors": self.harness_errors,
            "elapsed_s": round(self.elapsed, 1),
            "vm_faults_injected": dict(env.vm.faults_injected),
        }
        r["ok"] = (r["lost"] == 0 and not r["unrecovered"] and r["tracebacks"] == 0
                   and r["downlinks_received"] == r["downlinks_sent"] and n >= self.a.messages)
        return r


def table(r, args):
    rows = [
        ("messages published (seq 1..N)", r["messages"]),
        ("delivered at the broker (distinct)", r["delivered"]),
        ("lost (never PUBACKed: the firmware's fault)", r["lost"]),
        ("missing at the broker although it PUBACKed them", r["broker_lost"]),
        ("duplicated (resent after a lost PUBACK)", r["duplicates"]),
        ("dropped by the outbox policy (firmware)", r["dropped_by_policy"]),
        ("downlinks sent / received", "%d / %d" % (r["downlinks_sent"], r["downlinks_received"])),
        ("faults injected", r["faults_total"]),
    ]
    for kind in sorted(r["faults"]):
        rows.append(("  " + kind, r["faults"][kind]))
    h, f = r["harness_recovery_ms"], r["firmware_recovery_ms"]
    rows += [
        ("recovered (fresh uplink after the fault)", "%d of %d judged" % (r["recovered"], r["faults_total"] - len(r["harness_errors"]))),
        ("recovery, fault -> fresh uplink (ms)", "median %s, p95 %s, max %s" % (h["median"], h["p95"], h["max"])),
        ("firmware outages (link down -> up)", f["count"]),
        ("outage length (ms)", "median %s, p95 %s, max %s" % (f["median"], f["p95"], f["max"])),
    ]
    s = r["firmware_stats"]
    rows += [
        ("firmware: queued/sent/acked/unacked", "%s / %s / %s / %s" % (s.get("queued"), s.get("sent"), s.get("acked"), s.get("unacked"))),
        ("firmware: reconnects/recoveries/resets", "%s / %s / %s" % (s.get("reconnects"), s.get("recoveries"), s.get("resets"))),
        ("firmware: faults seen", json.dumps(s.get("faults"), sort_keys=True)),
        ("firmware: downlinks", s.get("downlinks")),
        ("Tracebacks in the firmware log", r["tracebacks"]),
        ("harness errors (cloud control calls; round not judged)", len(r["harness_errors"])),
        ("elapsed", "%.0f s" % r["elapsed_s"]),
        ("result", "PASS" if r["ok"] else "FAIL"),
    ]
    w = max(len(k) for k, _ in rows)
    out = ["soak: --messages %d --seed %d --interval %g --flow %s (%s, %s, %d CPUs)" % (
        args.messages, args.seed, args.interval, args.flow, platform.node(), platform.platform(), os.cpu_count() or 0)]
    out += ["| %-*s | %s |" % (w, k, v) for k, v in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.harness.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000, help="telemetry messages (seq 1..N) to get through")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (the same seed, the same run)")
    ap.add_argument("--interval", type=float, default=0.05, help="firmware telemetry interval (s)")
    ap.add_argument("--flow", choices=("mqtt", "http"), default="mqtt", help="the firmware's auth flow (default mqtt)")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of " + ",".join(FAULTS))
    ap.add_argument("--min-each", type=int, default=1, help="inject every kind at least this often")
    ap.add_argument("--gap", type=float, default=1.5, help="mean seconds of calm between faults")
    ap.add_argument("--outbox", type=int, default=1000, help="firmware outbox size (no policy drops)")
    ap.add_argument("--backoff-min", type=int, default=200, help="backoff_min_ms")
    ap.add_argument("--backoff-max", type=int, default=2000, help="backoff_max_ms")
    ap.add_argument("--recover-timeout", type=float, default=90.0, help="seconds the firmware has to deliver again after a fault (else the soak fails)")
    ap.add_argument("--max-seconds", type=float, default=6 * 3600, help="give up after this long (default 6 h)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--log", help="write the firmware's whole log to this file")
    ap.add_argument("--cloud-log", help="write the local cloud's whole log (broker, auth) to this file")
    ap.add_argument("-q", "--quiet", action="store_true", help="no line per fault")
    args = ap.parse_args(argv)
    args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
    bad = [k for k in args.faults if k not in FAULTS]
    if bad:
        ap.error("unknown fault kinds: %s" % ", ".join(bad))
    r = Soak(args).run()
    print(table(r, args), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
