"""Memory floor of the firmware (issue #9, figure 2), and where the memory goes.

    .venv/bin/python -m tools.bench.memory [--messages 1000] [--lo 16 --hi 256 --step 4]
                                           [--flows mqtt,http] [--json FILE] [--quick]

Host side (CPython): compiles the firmware with mpy-cross into a private directory (what
`make mpy` builds), then runs the real main.py as `micropython -X heapsize=<k> -c "import
main"` against the virtual module and the local cloud (the harness's SimEnv). The app publishes
QoS 1 telemetry every 10 ms while the cloud console sends one downlink every 10 ms on the
device's /user/get topic. A heap size *passes* when the cloud holds seq 1..N, the firmware
logged all N downlinks (`app: downlink ...`), and no MemoryError/Traceback appeared.
Bisection over lo..hi KiB in `step` KiB steps finds the smallest passing heap for the first
flow; each further flow is tried from that floor upwards; then the first flow with
"ntp": false from that floor downwards (what the NTP module costs; --no-lean skips it).
Every floor is confirmed: it must pass CONFIRM runs in a row, else the next step up is tried.

Under micropython this same file is the profile (MICROPYPATH=<mpy dir>, cwd = a board dir
with config.json, the module on the UART): heap cost of every import in the app's order
(gc.collect() + gc.mem_alloc(), qstr pool growth), of building the App, of each link phase
up to connected, and the bytes allocated per uplink, per downlink and per idle loop turn
with the GC disabled. The host prints it as findings.
"""
import sys

if sys.implementation.name == "micropython":  # ------------------------------ profile
    import gc

    import micropython
    from probe import heap as _collect  # tools/bench/probe.py, beside this file
    from probe import imports_and_config, out, uplink

    def profile():
        from time import sleep_ms

        mods = sys.argv[1].split(",")  # the app's import order, worked out by the host
        cfg, prev = imports_and_config(mods)
        from firmware import app
        a = app.App(cfg)
        now = _collect()
        out("app_object", now - prev)
        prev = now
        link = a.link
        # the phases up to connected: bytes allocated in each step (GC off) and the live heap
        # after it (GC on)
        for _ in range(200):
            st = link.state
            gc.collect()
            b0 = gc.mem_alloc()
            gc.disable()
            link.step()
            b1 = gc.mem_alloc()
            gc.enable()
            live = _collect()
            out("phase", st, b1 - b0, live)
            if link.state == "up":
                break
            sleep_ms(5)
        out("live_up", _collect())
        # idle loop turns: what a turn of the app's loop allocates with nothing to do
        gc.collect()
        gc.disable()
        b0 = gc.mem_alloc()
        for _ in range(100):
            link.step()
        b1 = gc.mem_alloc()
        gc.enable()
        out("per_idle_step", (b1 - b0) // 100)
        # uplinks: telemetry() + publish() + the step that sends it (QoS 1, PUBACK)
        n = 50
        parts = {"telemetry": 0, "queue": 0, "send": 0}
        for _ in range(n):
            t, q, sent, _ = uplink(a)
            parts["telemetry"] += t
            parts["queue"] += q
            parts["send"] += sent
        for k, v in parts.items():
            out("uplink_" + k, v // n)
        out("per_uplink", sum(parts.values()) // n)
        # QoS 0 for comparison (sent at once by Link.publish)
        gc.collect()
        gc.disable()
        b0 = gc.mem_alloc()
        for _ in range(n):
            link.publish(a.topics.update, '{"seq": 1234, "uptime_s": 56}', 0)
        b1 = gc.mem_alloc()
        gc.enable()
        out("per_qos0_publish", (b1 - b0) // n)
        # downlinks: the host sends `n`, we take them through the whole app (log line included)
        got = [0]
        on = a.on_message

        def counting(topic, payload):
            got[0] += 1
            on(topic, payload)

        link.on_message = counting
        gc.collect()
        print("WANT %d" % n)
        gc.disable()
        b0 = gc.mem_alloc()
        turns = 0
        for _ in range(4000):
            link.step()
            turns += 1
            if got[0] >= n:
                break
            sleep_ms(2)
            if gc.mem_free() < 20000:  # do not run out with the GC off
                break
        b1 = gc.mem_alloc()
        gc.enable()
        out("downlinks_got", got[0])
        if got[0]:
            out("per_downlink", (b1 - b0) // got[0])
            out("per_downlink_turns", turns)
        # the log line alone, for the same downlink
        from firmware import log

        gc.collect()
        gc.disable()
        b0 = gc.mem_alloc()
        for _ in range(n):
            log.info("app", "downlink %s %s", a.topics.get, app.printable(b'{"dl": 123}'))
        b1 = gc.mem_alloc()
        gc.enable()
        out("per_log_line", (b1 - b0) // n)
        gc.collect()
        out("live_end", gc.mem_alloc())
        micropython.mem_info()
        print("DONE")

    profile()
    sys.exit(0)

# ---------------------------------------------------------------------------- host side
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from firmware.at import RXBUF  # noqa: E402
from tools.bench.common import figures, firmware_and_cloud, parser, say  # noqa: E402
from tools.harness.build import build_romfs  # noqa: E402
from tools.cloud.console import client as console_client  # noqa: E402
from tools.proc import ROOT, micropython_bin  # noqa: E402
from tools.harness.env import SimEnv  # noqa: E402

BAD = ("MemoryError", "Traceback")
MB = "MEM "


def run_once(cloud, mpy_dir, heap_k, flow, n, interval, extra=None, romfs=None):
    """(passed, why, seconds). extra: config.json fields on top of the defaults; romfs: run
    from this ROMFS image of mpy_dir instead (tools/harness/env.py ROMFS_BOOT)."""
    t0 = time.monotonic()
    cfg = {"interval": interval, "qos": 1, "stats_interval": 0}
    cfg.update(extra or {})
    with SimEnv(flow=flow, cloud=cloud, cfg=cfg, heapsize="%dk" % heap_k, mpy_dir=mpy_dir, romfs=romfs) as env:
        fw = env.firmware
        i = 0

        def bad():
            nonlocal i
            lines = fw.lines
            while i < len(lines):
                if any(b in lines[i] for b in BAD):
                    return "\n".join(lines[max(0, i - 2): i + 12])
                i += 1
            if fw.proc.poll() is not None:
                return "firmware exited %s: %s" % (fw.proc.returncode, "\n".join(lines[-3:]))
            return None

        try:
            fw.wait_log("link: mqtt -> up", 30)
        except TimeoutError:
            return False, bad() or "not connected in 30 s", time.monotonic() - t0
        console = console_client(env.cloud.info)
        try:
            start = time.monotonic()
            for k in range(1, n + 1):
                due = start + k * interval
                while True:
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    time.sleep(left)
                console.publish(env.topics["get"], '{"dl": %d}' % k, qos=0)
                if k % 50 == 0:
                    why = bad()
                    if why:
                        return False, why, time.monotonic() - t0
            deadline = time.monotonic() + 20 + n * interval
            want = set(range(1, n + 1))
            while True:
                why = bad()
                if why:
                    return False, why, time.monotonic() - t0
                seqs = set()
                for _t, p, _q in env.uplinks():
                    try:
                        seqs.add(json.loads(p)["seq"])
                    except (ValueError, KeyError, TypeError):
                        pass
                dls = set()
                for line in fw.lines:
                    m = re.search(r'app: downlink \S+ \{"dl": (\d+)\}', line)
                    if m:
                        dls.add(int(m.group(1)))
                if want <= seqs and want <= dls:
                    return True, "", time.monotonic() - t0
                if time.monotonic() > deadline:
                    return False, "after %.0f s: uplinks seq 1..%d missing %d, downlinks missing %d (last log: %s)" % (
                        time.monotonic() - t0, n, len(want - seqs), len(want - dls), fw.lines[-1:]), time.monotonic() - t0
                time.sleep(0.2)
        finally:
            console.disconnect()
            console.loop_stop()


LEAN = {"ntp": False}  # the leanest default app: no time sync over MQTT


CONFIRM = 2  # a floor is a heap size that passed this many runs in a row (one run is luck at the edge)


def trial(cloud, mpy_dir, flow, n, interval, tried, extra=None, romfs=None, label=None):
    """test(k) -> passed: one run at -X heapsize=<k>k, recorded in `tried` and printed."""
    label = label or flow

    def test(k):
        ok, why, took = run_once(cloud, mpy_dir, k, flow, n, interval, extra, romfs)
        tried.append({"flow": label, "heap_k": k, "passed": ok, "why": why[-800:], "seconds": round(took, 1)})
        say("memory: flow %s heapsize %dk: %s (%.0f s)%s" % (label, k, "pass" if ok else "FAIL", took,
                                                              "" if ok else "\n    " + why.replace("\n", "\n    ")[-600:]))
        return ok

    return test


def confirm(test, k, step, hi):
    """k passed once: run it again until CONFIRM runs in a row pass, one step up after any
    failure. The confirmed floor, or None past hi."""
    passes = 1
    while passes < CONFIRM:
        if test(k):
            passes += 1
        elif k + step > hi:
            return None
        else:
            k, passes = k + step, 0
    return k


def bisect(test, lo, hi, step):
    """Smallest k in (lo, hi] (lo + multiples of step) that passes, confirmed; None if hi fails."""
    if not test(hi):
        return None
    good, bad_ = hi, lo  # invariant: good passes, bad_ fails (lo assumed failing)
    while good - bad_ > step:
        mid = bad_ + ((good - bad_) // step // 2) * step
        if test(mid):
            good = mid
        else:
            bad_ = mid
    return confirm(test, good, step, hi)


def romfs_floor(cloud, mpy_dir, flow, floor, step, n, interval, tried):
    """The floor with the .mpy files in a ROMFS image (mpremote romfs build), as on a board
    built with a ROMFS partition: bytecode and string constants stay in flash. The unix
    port has no flash, so the image is one bytearray at the bottom of the heap; its size is
    taken off the heap size found. {"image_bytes", "heap_k", "firmware_k"} or {"error"}."""
    tmp = tempfile.mkdtemp(prefix="bench-romfs-")
    img = os.path.join(tmp, "firmware.romfs")
    try:
        try:
            build_romfs(mpy_dir, img)
        except (OSError, subprocess.CalledProcessError) as e:
            return {"error": ("%s %s" % (e, getattr(e, "stdout", "") or ""))[-300:]}
        size = os.path.getsize(img)
        image_k = (size + 1023) // 1024
        test = trial(cloud, mpy_dir, flow, n, interval, tried, romfs=img, label=flow + " (ROMFS)")
        k = bisect(test, image_k + step, image_k + floor + 4 * step, step)
    finally:  # the image goes however the runs end
        shutil.rmtree(tmp, ignore_errors=True)
    say("memory: flow %s from a ROMFS image of %d B: %s" % (flow, size, "%d KiB heap" % k if k else "no pass"))
    return {"image_bytes": size, "heap_k": k, "firmware_k": (k - size / 1024.0) if k else None}


# loaded only when a device needs them (or dropped after boot): not part of the default app
# (thing: "thing"; journal: "outbox_persist"; update: read at start and dropped; ota: a job
# came; shadow, rrpc, aio: used by the program; the rest: another flow, another board, the REPL)
ON_DEMAND = ("firmware.config", "firmware.thing", "firmware.register", "firmware.http", "firmware.auth",
             "firmware.digest", "firmware.serial_uart", "firmware.diag", "firmware.aio", "firmware.journal",
             "firmware.update", "firmware.ota", "firmware.shadow", "firmware.rrpc",
             "firmware.sign")  # sign: loaded for each connect's credentials, then dropped


def import_order(mod="firmware.app", seen=None, entered=None):
    """Firmware modules in the order the default app loads them (depth first, imports in
    function bodies too, as App imports its parts lazily; ON_DEMAND ones left out). A module
    in an import circle is entered once, as Python and MicroPython do."""
    import ast

    seen = [] if seen is None else seen
    entered = set() if entered is None else entered
    path = os.path.join(ROOT, mod.replace(".", "/") + ".py")
    if mod in entered or not os.path.exists(path):
        return seen
    entered.add(mod)
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ([node.module + "." + a.name for a in node.names] if node.module == "firmware" else [])
        for n in names:
            if n.startswith("firmware.") and n not in seen and n not in ON_DEMAND:
                import_order(n, seen, entered)
    if mod not in seen:
        seen.append(mod)
    return seen


def profile(cloud, mpy_dir, flow, n_msgs=50):
    """Run the micropython half of this file against the virtual module; parse it."""
    env = SimEnv(flow=flow, cloud=cloud, cfg={"interval": 3600, "stats_interval": 0}, start_firmware=False)
    env.start()
    res = {"imports": [], "phases": [], "qstr": {}}
    try:
        env2 = dict(os.environ, MICROPYPATH=mpy_dir)
        proc = subprocess.Popen([micropython_bin(), "-X", "heapsize=1M", os.path.abspath(__file__),
                                 ",".join(import_order())], cwd=env.workdir, env=env2,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        console = None
        qtag = None
        raw = []
        for line in proc.stdout:
            raw.append(line.rstrip())
            if line.startswith("QSTR "):
                qtag = line[5:].strip()
            elif qtag and "n_total_bytes=" in line:
                res["qstr"][qtag] = int(line.split("n_total_bytes=")[1])
                qtag = None
            elif line.startswith("WANT "):
                k = int(line.split()[1])
                console = console_client(env.cloud.info)
                for i in range(k):
                    console.publish(env.topics["get"], '{"dl": %d}' % i, qos=0)
                    time.sleep(0.005)
            elif line.startswith(MB):
                p = line[len(MB):].split()
                if p[0] == "import":
                    res["imports"].append((p[1], int(p[2])))
                elif p[0] == "phase":
                    res["phases"].append((p[1], int(p[2]), int(p[3])))
                else:
                    res[p[0]] = int(p[1])
            elif line.startswith("GC:") or "max free sz" in line:
                res.setdefault("mem_info", []).append(line.strip())
        proc.wait(60)
        if console:
            console.disconnect()
            console.loop_stop()
        if "live_end" not in res:
            res["error"] = "\n".join(raw[-15:])
    finally:
        env.stop()
    sizes = {}
    for mod, _ in res["imports"]:
        p = os.path.join(mpy_dir, mod.replace(".", "/") + ".mpy")
        sizes[mod] = os.path.getsize(p) if os.path.exists(p) else 0
    res["mpy_sizes"] = sizes
    return res


def import_cost(mpy_dir, lo=16, hi=256):
    """The app's imports alone (in its order, from .mpy, the receive buffer first as App
    does): bytes allocated with the GC off, live after gc.collect() (the difference is
    garbage between the live objects: module and class dicts that grew, loader
    temporaries), and the smallest -X heapsize in KiB under which they succeed."""
    mods = import_order()
    body = "import sys\nsys.path.insert(0, '.')\nrx = bytearray(%d)\n" % RXBUF + "".join("import %s\n" % m for m in mods)
    probe = ("import gc\ngc.collect()\na = gc.mem_alloc()\ngc.disable()\n" + body +
             "b = gc.mem_alloc()\ngc.enable()\ngc.collect()\nprint(b - a, gc.mem_alloc() - a)\n")
    out = subprocess.run([micropython_bin(), "-X", "heapsize=1M", "-c", probe], cwd=mpy_dir,
                         capture_output=True, text=True, timeout=60).stdout.split()
    res = {"import_allocated": int(out[0]), "import_live": int(out[1])} if len(out) == 2 else {}

    def fits(k):
        p = subprocess.run([micropython_bin(), "-X", "heapsize=%dk" % k, "-c", body], cwd=mpy_dir,
                           capture_output=True, text=True, timeout=60)
        return p.returncode == 0

    k = bisect(fits, lo, hi, 1)
    if k:
        res["import_floor_k"] = k
    return res


def import_rows(imports, qstr):
    """(module, heap cost, qstr pool growth or None, source_stats) per import, in order:
    the pool's growth is read off the pool size after each import."""
    prevq = qstr.get("base", 0)
    for mod, cost in imports:
        q = qstr.get(mod)
        yield mod, cost, (q - prevq) if q is not None else None, source_stats(mod) or (0, 0, 0, 0)
        prevq = q if q is not None else prevq


def last_pool(r):
    """The qstr pool's size after the last import that reported it."""
    sizes = [r["qstr"][m] for m, _ in r["imports"] if r["qstr"].get(m) is not None]
    return sizes[-1] if sizes else r["qstr"].get("base", 0)


def source_stats(mod):
    """(functions incl. lambdas and methods, classes, long string constants: count, bytes) of a
    firmware module: each function is a raw code + bytecode + a function object in RAM, each
    string literal over 10 chars a str object created when the .mpy is loaded."""
    import ast

    path = os.path.join(ROOT, mod.replace(".", "/") + ".py")
    try:
        with open(path) as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError):
        return None
    funcs = classes = nstr = bstr = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            funcs += 1
        elif isinstance(node, ast.ClassDef):
            classes += 1
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) > 10:
            nstr += 1
            bstr += len(node.value)
    return funcs, classes, nstr, bstr


def findings(prof):
    if not prof or "imports_total" not in prof:
        return "profile failed: %s" % (prof or {}).get("error", "?")
    L = []
    L.append("Measured with tools/bench/memory.py under micropython (GC heap, gc.collect() before each reading; "
             "%d B are in use before the first import: the interpreter and the profile script itself, compiled "
             "from source; every figure below is a difference). qstr pools grow in doubling chunks, so their growth "
             "lands on whichever import crosses a chunk." % prof.get("base", 0))
    L.append("")
    L.append("| import (app order) | heap after gc.collect | .mpy size | qstr pool growth | functions / classes | string literals > 10 chars |")
    L.append("|---|---|---|---|---|---|")
    for mod, cost, dq, ss in import_rows(prof["imports"], prof["qstr"]):
        L.append("| %s | +%d B | %d B | %s | %d / %d | %d, %d B |" % (mod, cost, prof["mpy_sizes"].get(mod, 0),
                                                                 "+%d B" % dq if dq is not None else "?", ss[0], ss[1], ss[2], ss[3]))
    L.append("| **all imports** | **%d B** | %d B | %d B | | |" % (prof["imports_total"] - prof.get("base", 0), sum(prof["mpy_sizes"].values()),
                                                                last_pool(prof) - prof["qstr"].get("base", 0)))
    if prof.get("import_floor_k"):
        L.append("")
        L.append("The imports alone (same order, the receive buffer first, nothing else running) allocate %d B with "
                 "the GC off, of which %d B stay live: the other %d B (module and class dicts that grew while "
                 "filling, class bodies, loader temporaries) become holes between live objects, so they need "
                 "`-X heapsize=%dk` (1 KiB steps) although %.0f KiB are live. The floor of the whole app is that "
                 "plus config.json, the objects and the messages in flight." % (
                     prof["import_allocated"], prof["import_live"], prof["import_allocated"] - prof["import_live"],
                     prof["import_floor_k"], prof["import_live"] / 1024.0))
    L.append("")
    L.append("| object / step | bytes |")
    L.append("|---|---|")
    for key, label in (("config", "app.load_config(): the cfg dict with defaults (the checker dropped, its qstrs stay)"),
                       ("topics_object", "aliyun.Topics (13 topic strings)"),
                       ("app_object", "App(cfg): Air72x + AT (1536-byte rx buffer) + Link + Outbox + socket UART"),
                       ("live_up", "live heap once connected (everything the firmware holds)"),
                       ("per_idle_step", "allocated per idle Link.step()"),
                       ("uplink_telemetry", "per uplink: App.telemetry() (json.dumps of the dict)"),
                       ("uplink_queue", "per uplink: Link.publish() into the outbox"),
                       ("uplink_send", "per uplink: the step that sends it (AT+MPUB built, OK + PUBACK parsed)"),
                       ("per_uplink", "per QoS 1 uplink, total"),
                       ("per_qos0_publish", "per QoS 0 Link.publish() (sent at once)"),
                       ("per_downlink", "per downlink through the whole app (AT engine, driver inbox, Link, App log line, idle turns)"),
                       ("per_log_line", "... of which the `app: downlink` log line alone")):
        if key in prof:
            L.append("| %s | %d |" % (label, prof[key] - (prof.get("base", 0) if key == "live_up" else 0)))
    ph = prof.get("phases") or []
    if ph:
        L.append("")
        L.append("Connect phases (bytes allocated during the step with the GC off = transient garbage; live heap after it):")
        L.append("")
        L.append("| phase | allocated in step | live after |")
        L.append("|---|---|---|")
        for st, alloc, live in ph:
            L.append("| %s | %d | %d |" % (st, alloc, live - prof.get("base", 0)))
    if prof.get("mem_info"):
        L.append("")
        L.append("micropython.mem_info() at the end (1 MiB profile heap): `%s`" % "`, `".join(prof["mem_info"]))
    return "\n".join(L)


def tried_text(tried):
    """The bisection, one line per run, with where a failing run failed."""
    L = ["Heap sizes tried (1 run each):", ""]
    for t in tried:
        where = ""
        if not t["passed"]:
            locs = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', t["why"])
            err = re.findall(r"(MemoryError[^\n]*)", t["why"])
            where = ": " + (" <- ".join("%s:%s %s" % (os.path.basename(f), ln, fn) for f, ln, fn in locs[::-1][:2]) or t["why"][-120:].replace("\n", " "))
            if err:
                where += " (%s)" % err[0]
        L.append("- %s %d KiB: %s%s" % (t["flow"], t["heap_k"], "pass" if t["passed"] else "FAIL", where))
    return "\n".join(L)


def main(argv=None):
    ap = parser(__doc__, "200 messages", messages=1000, interval=0.01, lo=16, hi=256, step=4, flows="mqtt,http")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-lean", action="store_true", help="skip the floor without NTP")
    ap.add_argument("--no-romfs", action="store_true", help="skip the floor with the firmware in a ROMFS image")
    a = ap.parse_args(argv)
    n = 200 if a.quick else a.messages
    with figures(a.json, messages=n, lo_k=a.lo, hi_k=a.hi, step_k=a.step, floor_k={}, no_ntp_k={}, confirm_runs=CONFIRM,
                 tried=[]) as result, firmware_and_cloud() as (cloud, mpy_dir):
        floor = None
        for flow in a.flows.split(","):
            test = trial(cloud, mpy_dir, flow, n, a.interval, result["tried"])
            if floor is None:
                k = bisect(test, a.lo, a.hi, a.step)
            else:  # from the first flow's floor upwards
                k = next((cand for cand in range(floor, a.hi + 1, a.step) if test(cand)), None)
                k = k and confirm(test, k, a.step, a.hi)
            result["floor_k"][flow] = k
            if floor is None and k:
                floor = k
            say("memory: flow %s floor %s" % (flow, "%d KiB" % k if k else "> %d KiB" % a.hi))
        if floor and not a.no_lean:  # what NTP costs: the first flow without it, downwards
            flow = a.flows.split(",")[0]
            test = trial(cloud, mpy_dir, flow, n, a.interval, result["tried"], LEAN, label=flow + " (no NTP)")
            k = floor
            for cand in range(floor - a.step, a.lo, -a.step):
                if not test(cand):
                    break
                k = cand
            # at the floor itself it passed twice with NTP on, which needs more
            k = confirm(test, k, a.step, a.hi) if k < floor else k
            result["no_ntp_k"] = {flow: k}
            say("memory: flow %s without NTP floor %d KiB" % (flow, k))
        if floor and not a.no_romfs:
            result["romfs"] = romfs_floor(cloud, mpy_dir, a.flows.split(",")[0], floor, a.step, n, a.interval, result["tried"])
        if not a.no_profile:
            prof = profile(cloud, mpy_dir, a.flows.split(",")[0])
            prof.update(import_cost(mpy_dir))
            result["profile"] = {k: v for k, v in prof.items() if k not in ("mpy_sizes",)}
            result["findings"] = tried_text(result["tried"]) + "\n\n" + findings(prof)
            say(result["findings"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
