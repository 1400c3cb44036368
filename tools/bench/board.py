"""The firmware's figures on a board (issue 22): the emulated Pico (tools/board/, the real
MicroPython rp2 port, RPI_PICO v1.28.0), beside the unix port's (memory.py's profile).

    .venv/bin/python -m tools.bench.board [--json FILE] [--quick]

The firmware is deployed once (make deploy PORT=socket://..., .mpy from the board's flash,
the mqtt flow with NTP, otherwise the default config; wdt_ms 0 so that the board may sit at
its REPL between the phases); each session then boots a Pico from a copy of that flash,
stops the main.py that starts at power-up, soft-resets and sends the top half of this
file to the raw REPL, which measures on the board itself:

- RAM: gc.mem_alloc() after gc.collect() at the fresh REPL (boot), after each import of
  the app's modules in its order, after app.load_config(), the UART, App(cfg), once
  connected (the link up) and settled (NTP answered, the first telemetry acked); per
  connect phase and per turn of the app loop the peak between two gc.collect() (the GC
  off in between: the live heap plus everything the step allocated); bytes allocated per
  QoS 1 uplink, per QoS 0 publish and per downlink through the whole app (App.run: AT
  engine, driver, Link, the app's log line, the idle turns between), the GC off.
- CPU: time.ticks_us() on the emulated Pico counts RP2040 cycles at 125 MHz. The app's
  own loop (App.run) runs while the host sends downlinks; every sleep of the loop and every
  wait of the AT engine for input is timed and taken off, the rest is CPU. Per downlink:
  that minus the same number of idle turns (measured first), against the downlink's wire
  time (its +MSUB bytes at the UART's rate); per QoS 0 publish: Link.publish() less the
  engine's waits, against its AT+MPUB + OK bytes. At 115200 and at 921600 baud (the board's
  UART set so; the emulator paces what the board receives at that rate). Interrupt time
  spent while the loop sleeps is not counted.
- 4 KB downlinks (the Air780EP, which delivers up to 4100 bytes): the peak and the live
  heap around them. The 10-minute run is tools/board/longrun.py (make board BOARD_MINUTES=10).
"""
import sys

if sys.implementation.name == "micropython":  # ------------------------- the board half
    from probe import heap, imports_and_config, out, uplink  # tools/bench/probe.py: its text goes first (board_half)

    # <board>
    import gc
    import sys

    import micropython
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms, ticks_us

    _t = [0]

    def _begin(label):
        """A CPU window: wait until the host has read everything printed so far (it answers
        SYNC once it has), say that the window starts (the line reaches it at once), then
        idle for _PAD ms (so that the window's edges, where the host's timing is coarse,
        are quiet) and start the clock."""
        print("SYNC " + label)
        sys.stdin.read(1)
        print("CPU begin " + label)
        sleep_ms(_PAD)
        _t[0] = ticks_us()

    def _end(label, n=0, nbytes=0):
        core = ticks_diff(ticks_us(), _t[0])
        sleep_ms(_PAD)
        print("CPU end %s %d %d %d" % (label, n, nbytes, core))

    _PAD = 400  # ms of idle around a CPU window

    def _board(args):
        cfg, prev = imports_and_config(args["mods"])
        from firmware import app, log
        from firmware.uart import open_uart

        def _drop(line):
            pass

        uart = open_uart(cfg["uart"])
        now = heap()
        out("uart_object", now - prev)
        prev = now
        a = app.App(cfg, uart=uart)
        now = heap()
        out("app_object", now - prev)
        prev = now
        link = a.link
        # connect: per phase the steps, the most one step allocated (GC off) and the peak
        seen = {}
        order = []
        t0 = ticks_ms()
        while link.state != "up" and ticks_diff(ticks_ms(), t0) < 180000:
            st = link.state
            live = heap()
            gc.disable()
            b0 = gc.mem_alloc()
            link.step()
            b1 = gc.mem_alloc()
            gc.enable()
            s = seen.get(st)
            if s is None:
                s = seen[st] = [0, 0, 0]
                order.append(st)
            s[0] += 1
            s[1] = max(s[1], b1 - b0)
            s[2] = max(s[2], live + b1 - b0)
            sleep_ms(5)
        for st in order:
            s = seen[st]
            out("phase", st, s[0], s[1], s[2])
        out("connect_ms", ticks_diff(ticks_ms(), t0))
        out("live_up", heap())
        if link.state != "up":
            print("NOT CONNECTED")
            return

        a.cfg["interval"] = 3600  # telemetry only when measured (App.run sends one at its start)
        a.cfg["stats_interval"] = 0
        got = [0, 0, 0, 0]  # downlinks, bytes, ticks_ms of the first and the last

        on = link.on_message

        def counting(topic, payload):
            got[0] += 1
            got[1] += len(payload)
            got[3] = ticks_ms()
            if got[0] == 1:
                got[2] = got[3]
            on(topic, payload)

        link.on_message = counting
        st = {}

        def window(mem, until):
            """One App.run() until until(); with mem the GC off and one collect per turn:
            the peak between two collects, what the turns allocated. The CPU of a window is
            the emulator's count between its "CPU begin" and "CPU end" lines."""
            st.update(turns=0, alloc=0, peak=0, live=heap())
            if mem:
                gc.disable()
            else:  # the log lines are made but not written out: the emulator's USB is not a board's
                log.sink = _drop

            def hook():
                if mem:
                    held = gc.mem_alloc()
                    st["peak"] = max(st["peak"], held)
                    st["alloc"] += held - st["live"]
                    gc.collect()
                    st["live"] = gc.mem_alloc()
                st["turns"] += 1
                return until()
            a.run(until=hook)
            gc.enable()
            log.sink = None
            return st

        # settle: the first telemetry (App.run's start) acked, NTP answered
        stop = ticks_add(ticks_ms(), args.get("settle_ms", 4000))
        w = window(True, lambda: ticks_diff(ticks_ms(), stop) >= 0)
        out("settle", w["turns"], w["peak"])
        out("live_settled", heap())
        # idle turns: the baseline a downlink's CPU is measured against
        _begin("pad")  # the pads alone, taken off every window
        _end("pad")
        _begin("idle")
        stop = ticks_add(ticks_ms(), args.get("idle_ms", 3000))
        w = window(False, lambda: ticks_diff(ticks_ms(), stop) >= 0)
        _end("idle", w["turns"])
        stop = ticks_add(ticks_ms(), 1000)
        w = window(True, lambda: ticks_diff(ticks_ms(), stop) >= 0)
        out("idle_mem", w["turns"], w["alloc"], w["peak"])

        # QoS 1 uplinks (as memory.py: telemetry(), Link.publish(), the steps until PUBACK)
        n = args.get("uplinks", 20)
        parts = [0, 0, 0]
        peak = 0
        for _ in range(n):
            t, q, sent, live = uplink(a)
            parts[0] += t
            parts[1] += q
            parts[2] += sent
            peak = max(peak, live + t + q + sent)
        out("uplink", n, parts[0] // n, parts[1] // n, parts[2] // n, peak)

        # QoS 0 publish: sent at once (AT+MPUB, its OK)
        n = args.get("qos0", 30)
        payload = '{"seq": 1234, "uptime_s": 56}'
        live = heap()
        # the console: one downlink's log line written to the USB REPL once it has drained
        for size in (64, 1024):
            body = b"x" * size
            sleep_ms(300)
            t = ticks_us()
            a.log_downlink(a.topics.get, body)
            el = ticks_diff(ticks_us(), t)
            log.sink = _drop
            t = ticks_us()
            a.log_downlink(a.topics.get, body)
            out("log_line", size, el, ticks_diff(ticks_us(), t))
            log.sink = None
        _begin("qos0")
        gc.disable()
        b0 = gc.mem_alloc()
        t = ticks_us()
        for _ in range(n):
            link.publish(a.topics.update, payload, 0)
        el = ticks_diff(ticks_us(), t)
        b1 = gc.mem_alloc()
        gc.enable()
        _end("qos0", n)
        out("qos0", n, (b1 - b0) // n, el // n, live + (b1 - b0) // n)

        # downlinks through the whole app: the host sends them when it reads WANT
        for kind, n, size in args.get("downlinks", ()):
            mem = kind == "mem"
            got[0] = got[1] = 0
            t0 = ticks_ms()
            stop = ticks_add(t0, 240000)
            if not mem:
                _begin("dl%d" % size)
            print("WANT %d %d" % (n, size))
            w = window(mem, lambda n=n, stop=stop: got[0] >= n or ticks_diff(ticks_ms(), stop) >= 0)
            if not mem:
                _end("dl%d" % size, got[0], got[1])
            out("downlinks", kind, size, got[0], got[1], w["turns"], w["alloc"], w["peak"],
                 ticks_diff(got[2], t0), ticks_diff(got[3], t0))
        out("live_end", heap())
        micropython.mem_info()
        print("DONE")

    _board(ARGS)  # noqa: F821  (the host puts ARGS = {...} before this text)
    # </board>
    sys.exit(0)

# ---------------------------------------------------------------------------- host side
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from tools.bench.common import board_text, figures, firmware_and_cloud, parser, say  # noqa: E402
from tools.bench.memory import import_order, import_rows, last_pool  # noqa: E402
from tools.bench.memory import profile as unix_profile  # noqa: E402
from tools.board import kit as kitmod  # noqa: E402
from tools.board.env import BOARD_UART, BoardEnv, put  # noqa: E402
from tools.cloud.console import client as console_client  # noqa: E402

IMAGE = "v1.28.0"
TARGET_LIVE = 32 * 1024  # the target for the live heap once connected
BAUDS = (115200, 921600)
TARGET_CPU = {115200: 0.10, 921600: 0.50}  # of the wire time
STATS_S = 0.1  # the emulator's CPU samples (Pico.cpu)


def board_imports():
    """The app's imports on a board: its UART is a machine.UART, so firmware/uart.py never
    loads the socket adapter (only a socket:// URL does: PCs and the unix port)."""
    return [m for m in import_order() if m != "firmware.socket_uart"]


def board_half(args):
    """The top half of this file as a script for the board's raw REPL: ARGS, the probe's
    text (tools/bench/probe.py: the board has no tools/), then the half."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")) as f:
        probe = f.read()
    return "import sys\nARGS = %r\n" % (args,) + probe + board_text(os.path.abspath(__file__))


def msub_bytes(topic, size):
    """The bytes of one +MSUB downlink on the wire (the virtual module's framing)."""
    return len(b'\r\n+MSUB: "') + len(topic) + len(b'",') + len(b"%d byte," % size) + size + 2


def downlink(k, size):
    """A downlink of exactly `size` bytes (JSON from 24 bytes on), numbered k."""
    head = ('{"dl": %d, "pad": "' % k).encode()
    if size < len(head) + 2:
        return b"x" * size
    return head + b"x" * (size - len(head) - 2) + b'"}'


def parse(lines):
    res = {"imports": [], "phases": [], "qstr": {}, "downlinks": [], "mem_info": []}
    qtag = None
    for line in lines:
        if line.startswith("QSTR "):
            qtag = line[5:].strip()
        elif qtag and "n_total_bytes=" in line:
            res["qstr"][qtag] = int(line.split("n_total_bytes=")[1].split(",")[0])
            qtag = None
        elif line.startswith("GC:") or "max free sz" in line:
            res["mem_info"].append(line.strip())
        elif line.startswith("MEM "):
            p = line[4:].split()
            k, v = p[0], p[1:]
            if k == "import":
                res["imports"].append((v[0], int(v[1])))
            elif k == "phase":
                res["phases"].append((v[0],) + tuple(int(x) for x in v[1:]))
            elif k == "downlinks":
                res["downlinks"].append((v[0],) + tuple(int(x) for x in v[1:]))
            elif k == "log_line":
                res.setdefault("log_line", []).append([int(x) for x in v])
            else:
                nums = [int(x) for x in v]
                res[k] = nums[0] if len(nums) == 1 else nums
    return res


class Session:
    """A Pico booted from the deployed flash (a copy), the world of `personality` on its
    UART, `cfg` over the deployed config (copied when it differs), the fresh REPL."""

    def __init__(self, kit, cloud, fs, cfg=None, personality=None):
        self.env = BoardEnv(kit, IMAGE, cfg=cfg, cloud=cloud, personality=personality, fs=fs, deploy=False,
                            stats=STATS_S)

    def __enter__(self):
        b = self.env.start()
        b.console.raw()  # stops the main.py that power-up started
        b.console.stop()  # mpremote takes the port now
        put(b.pico.port, b.config_path, ":config.json")
        con = b.console = b.pico.repl()
        con.raw()
        con.soft_reset()  # a fresh heap, in the raw REPL (main.py does not run)
        return b

    def __exit__(self, *exc):
        self.env.stop()


def run_board_half(b, args, timeout=900):
    """The board half in the raw REPL; the downlinks it asks for (WANT n size) are sent from
    the cloud's console. The parsed figures (with "error" when it did not finish)."""
    con = b.console
    boot = con.exec("import gc\ngc.collect()\nprint(gc.mem_alloc(), gc.mem_free())").split()
    mark = con.send(board_half(args))
    console = console_client(b.cloud.info)
    pos = mark
    sends = []

    def want_or_end(buf):
        """(end of a WANT or SYNC line, n, size), or True when the run has ended."""
        m = re.search(rb"(?:^|\n)(?:WANT (\d+) (\d+)|SYNC \w+)\r?\n", buf)
        if m:
            return m.end(), int(m.group(1) or 0), int(m.group(2) or 0)
        i = buf.find(b"\x04")
        return i >= 0 and buf.find(b"\x04", i + 1) >= 0 or None
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = con.wait_for(want_or_end, pos, max(1, deadline - time.monotonic()), what="WANT line or the end")
            if got is True:
                break
            end, n, size = got
            pos += end
            if not n:  # SYNC: all that came before it is read
                con.write(b"g")
                continue
            t = time.monotonic()
            for k in range(n):
                console.publish(b.topics["get"], downlink(k, size), qos=0)
                time.sleep(0.005)
            sends.append((size, n, round(time.monotonic() - t, 3)))
        out, err = con.result(mark, timeout=120, check=False)
    except TimeoutError as e:
        out, err = con.text(mark), str(e)
    finally:
        console.disconnect()
        console.loop_stop()
    res = parse(out.splitlines())
    res["sends"] = sends
    res["boot"] = [int(x) for x in boot[:2]]
    time.sleep(3 * STATS_S)  # the sample that covers the last window's end
    res["cpu"] = cpu_windows(b, mark)
    if err or "live_end" not in res:
        res["error"] = (err or out[-1500:]).strip()[-1500:]
    return res


def cpu_windows(b, mark):
    """{label: [busy us, core us, n, bytes]}: the chip's CPU (the emulator's count) between
    each "CPU begin <label>" line and its "CPU end <label> <n> <bytes> <core us>" line, timed
    as they arrived, less that of the idle pads around it; core: the board's own clock
    between the pads."""
    con = b.console
    data = bytes(con.data[mark:])
    begins = {m.group(1): m.start() for m in re.finditer(rb"CPU begin (\w+)\r?\n", data)}
    out = {}
    for m in re.finditer(rb"CPU end (\w+) (\d+) (\d+) (\d+)\r?\n", data):
        label = m.group(1)
        if label not in begins:
            continue
        t0, t1 = con.arrived(mark + begins[label]), con.arrived(mark + m.start())
        busy, _elapsed = b.pico.cpu(t0, t1)
        out[label.decode()] = [busy, int(m.group(4)), int(m.group(2)), int(m.group(3))]
    pad = out.pop("pad", None)
    for v in out.values():
        v[0] = round(v[0] - (pad[0] if pad else 0))
    return out


def wire_out_qos0(vm):
    """Bytes of one QoS 0 AT+MPUB of the board half's payload (command + CR)."""
    cmds = [c for c in vm.commands if c.startswith("AT+MPUB=") and "1234" in c]
    return len(cmds[-1]) + 1 if cmds else None


SESSIONS = ("b115200", "b921600", "air780ep_4k")


def measure(quick, only=SESSIONS, unix=True):
    """Every board figure; {"skipped": why} without the kit."""
    try:
        kit = kitmod.find(images=(IMAGE,))
    except kitmod.KitMissing as e:
        return {"skipped": str(e)}
    res = {"image": IMAGE}
    dl = [("mem", 5 if quick else 10, 64), ("cpu", 30 if quick else 100, 64),
          ("mem", 5 if quick else 10, 1024), ("cpu", 8 if quick else 25, 1024)]
    with firmware_and_cloud() as (cloud, mpy_dir):
        res["mpy_sizes"] = {m: os.path.getsize(os.path.join(mpy_dir, m.replace(".", "/") + ".mpy"))
                            for m in board_imports() if os.path.exists(os.path.join(mpy_dir, m.replace(".", "/") + ".mpy"))}
        tmp = tempfile.mkdtemp(prefix="bench-board-")
        try:
            flash = os.path.join(tmp, "deployed.img")
            t = time.monotonic()
            say("board: deploying to the emulated Pico (%s) ..." % IMAGE)
            with BoardEnv(kit, IMAGE, cloud=cloud, cfg={"wdt_ms": 0, "stats_interval": 0}, fs=flash, run_main=False):
                pass
            res["deploy_s"] = round(time.monotonic() - t, 1)
            args = {"mods": board_imports(), "downlinks": dl}

            def session(key, cfg=None, personality=None, a=None):
                img = os.path.join(tmp, key + ".img")
                shutil.copyfile(flash, img)
                say("board: session %s ..." % key)
                t = time.monotonic()
                base = {"wdt_ms": 0, "stats_interval": 0}
                base.update(cfg or {})
                with Session(kit, cloud, img, base, personality) as b:
                    r = run_board_half(b, a or args)
                    r["qos0_out"] = wire_out_qos0(b.vm)
                    r["topic"] = b.topics["get"]
                r["seconds"] = round(time.monotonic() - t, 1)
                if r.get("error"):
                    say("board: session %s: %s" % (key, r["error"][-600:]))
                res[key] = r

            if "b115200" in only:
                session("b115200")
            if "b921600" in only:
                session("b921600", {"uart": dict(BOARD_UART, baud=921600)},
                        a=dict(args, mods=[], uplinks=5, downlinks=[d for d in dl if d[0] == "cpu"]))
            if "air780ep_4k" in only:
                session("air780ep_4k", personality="air780ep",
                        a=dict(args, mods=[], uplinks=5, qos0=5, downlinks=[("cpu", 3 if quick else 10, 4096)]))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if unix:
            say("board: the unix port's profile, for the figures beside ...")
            try:
                res["unix"] = unix_profile(cloud, mpy_dir, "mqtt")
            except Exception as e:  # the board figures stand without it
                res["unix"] = {"error": repr(e)}
    res["summary"] = summary(res)
    res["findings"] = findings(res)
    return res


# ------------------------------------------------------------------------- the figures
def cpu(r, baud):
    """[(label, CPU us per item, the same net of the idle loop's share, wire us per item)]
    of one session: the chip's busy time in the item's window per item; net: less the idle
    app loop's busy rate over the window's time (a lower bound: a loop that is reading does
    not also idle)."""
    out = []
    w = (r or {}).get("cpu") or {}
    if "idle" not in w or not w["idle"][1]:
        return out
    rate = max(0.0, w["idle"][0] / float(w["idle"][1]))
    byte_us = 10e6 / baud
    items = [("dl%d" % d[1], "%d B downlink" % d[1], msub_bytes(r["topic"].encode(), d[1]))
             for d in r.get("downlinks", ()) if d[0] == "cpu"]
    if r.get("qos0_out"):
        items.append(("qos0", "QoS 0 publish", r["qos0_out"] + 6))  # AT+MPUB... CR out, \r\nOK\r\n back
    for key, label, nbytes in items:
        if key not in w or not w[key][2]:
            continue
        busy, core, n, _b = w[key]
        out.append((label, busy / float(n), max(0.0, busy - rate * core) / n, nbytes * byte_us))
    return out


def summary(res):
    """The single figures (for the table and --json)."""
    s = {}
    r = res.get("b115200") or {}
    if "live_up" in r:
        base = r["base"][0] if isinstance(r["base"], list) else r["base"]
        s["boot"] = r["boot"][0]
        s["live_up"] = r["live_up"] - base
        s["live_settled"] = r.get("live_settled", r["live_up"]) - base
        peaks = [p[3] for p in r["phases"]] + [r.get("settle", [0, 0])[1], r.get("uplink", [0] * 5)[4],
                                               r.get("qos0", [0] * 4)[3]] + [d[6] for d in r["downlinks"] if d[0] == "mem"]
        s["peak"] = max(peaks) - base
        if r.get("uplink"):
            s["per_uplink"] = sum(r["uplink"][1:4])
        for d in r["downlinks"]:
            if d[0] == "mem" and d[2]:
                s["per_downlink_%d" % d[1]] = d[5] // d[2]
        if r.get("qos0"):
            s["per_qos0"] = r["qos0"][1]
    k4 = res.get("air780ep_4k") or {}
    for d in k4.get("downlinks", ()):  # the GC on (a turn that waits for a reply while 4 KB stream in
        if d[2]:                        # allocates more than the heap holds with it off), no peak
            base = k4["base"][0] if isinstance(k4["base"], list) else k4["base"]
            s["live_4k"] = k4.get("live_end", 0) - base
            s["got_4k"] = d[2]
    s["cpu"] = {b: [(lbl, round(us), round(net), round(w), round(us / w, 4)) for lbl, us, net, w in cpu(res.get("b%d" % b), b)]
                for b in BAUDS}
    u = res.get("unix") or {}
    if "live_up" in u:
        s["unix"] = {"live_up": u["live_up"] - u.get("base", 0), "per_uplink": u.get("per_uplink"),
                     "per_downlink": u.get("per_downlink"), "per_qos0": u.get("per_qos0_publish")}
    return s


def findings(res):
    """BENCHMARKS.md's board section: which figure to read, where every KB goes."""
    if res.get("skipped"):
        return "Not measured: %s" % res["skipped"]
    r = res.get("b115200") or {}
    if "imports_total" not in r:
        return "The board profile failed: %s" % (r.get("error") or "?")
    s = res["summary"]
    base = r["base"][0] if isinstance(r["base"], list) else r["base"]
    u = res.get("unix") or {}
    uimp = dict(u.get("imports") or [])
    L = []
    L.append("**The figure a Pico user should read: the board's live heap once connected, %d B (%.1f KiB)** (target "
             "<= 32 KiB: %s). It is what the firmware holds on a Raspberry Pi Pico running MicroPython %s from `.mpy` "
             "files in its flash, mqtt flow with NTP, default config, after gc.collect(); MicroPython itself holds %d B "
             "at a fresh REPL before that (of %d B of GC heap). The heap it needs is that plus the peak between two "
             "collections, %d B here (the largest step: see below). The unix port's figures (64-bit: every object and "
             "pointer twice a board's size, bytecode read the same way) are for comparing changes, not for sizing a board."
             % (s["live_up"], s["live_up"] / 1024.0, "**met**" if s["live_up"] <= TARGET_LIVE else "**NOT met**",
                IMAGE[1:], r["boot"][0], r["boot"][0] + r["boot"][1], s["peak"]))
    L.append("")
    L.append("Where every byte of the live heap goes on the board (gc.mem_alloc() after gc.collect() around each step, "
             "in the app's order; the bench's own script, %d B, is taken off as the base). A module's cost is its "
             "bytecode and constants loaded from the `.mpy` into RAM (the RPI_PICO build has no ROMFS to run them "
             "from flash), its function, class and dict objects, and the qstrs its names add to the pool (pools "
             "grow in chunks, so that growth lands on whichever import crosses one)." % (base - r["boot"][0]))
    L.append("")
    L.append("| part | board | unix port | .mpy size | qstr pool growth | functions / classes | string literals > 10 chars |")
    L.append("|---|---|---|---|---|---|---|")
    for mod, cost, dq, ss in import_rows(r["imports"], r["qstr"]):
        L.append("| import %s | %d B | %s | %d B | %s | %d / %d | %d, %d B |" % (
            mod, cost, "%d B" % uimp[mod] if mod in uimp else "", res["mpy_sizes"].get(mod, 0),
            "+%d B" % dq if dq is not None else "?", ss[0], ss[1], ss[2], ss[3]))
    imports = r["imports_total"] - base
    L.append("| **all imports** | **%d B** | %s | %d B | %d B | | |" % (
        imports, "%d B" % (u["imports_total"] - u.get("base", 0)) if "imports_total" in u else "",
        sum(res["mpy_sizes"].values()), last_pool(r) - r["qstr"].get("base", 0)))
    rows = [("app.load_config(): the cfg dict with its defaults (the checker dropped)", r.get("config", 0), u.get("config")),
            ("the UART: machine.UART(1) and its 4096-byte rxbuf (on rp2 in the GC heap)", r.get("uart_object", 0), None),
            ("App(cfg) without the UART: Air72x + AT (its 1536-byte buffer), Link, Outbox, Topics, Ntp",
             r.get("app_object", 0), u.get("app_object"))]
    kept = r["live_up"] - r["imports_total"] - sum(x[1] for x in rows)
    rows.append(("kept by connecting (module facts, subscriptions, session state, NTP/OTA state)", kept, None))
    for label, v, uv in rows:
        L.append("| %s | %d B | %s | | | | |" % (label, v, "%d B" % uv if uv is not None else ""))
    L.append("| **live once connected** | **%d B** | %s | | | | |" % (
        s["live_up"], "%d B" % s["unix"]["live_up"] if s.get("unix") else ""))
    L.append("| live once settled (first telemetry acked, NTP answered) | %d B | | | | | |" % s["live_settled"])
    L.append("")
    L.append("(topics alone, built and dropped before App: %d B.) Peaks between two gc.collect() (live heap + what one "
             "step, loop turn or message allocated with the GC off), less the base. A loop turn can take in several "
             "downlinks of a burst (a poll makes up to 8 reads of what the UART holds), so the "
             "downlink rows' peak is that of the busiest turn; the per-downlink allocation is what each costs. "
             "The 10-minute run with 4 KB downlinks is `make board BOARD_MINUTES=10` (tools/board/longrun.py)."
             % r.get("topics_object", 0))
    L.append("")
    L.append("| step | steps | most allocated in one | peak |")
    L.append("|---|---|---|---|")
    for st, n, most, peak in r["phases"]:
        L.append("| connect: %s | %d | %d B | %d B |" % (st, n, most, peak - base))
    if r.get("settle"):
        L.append("| App.run settling (first telemetry, NTP) | %d turns | | %d B |" % (r["settle"][0], r["settle"][1] - base))
    if r.get("uplink"):
        L.append("| QoS 1 uplink (telemetry, publish, steps to PUBACK) | %d | %d B | %d B |" % (
            r["uplink"][0], sum(r["uplink"][1:4]), r["uplink"][4] - base))
    if r.get("qos0"):
        L.append("| QoS 0 publish | %d | %d B | %d B |" % (r["qos0"][0], r["qos0"][1], r["qos0"][3] - base))
    for d in r["downlinks"]:
        if d[0] == "mem" and d[2]:
            L.append("| %d B downlinks through App.run | %d (%d turns) | %d B per downlink | %d B |" % (
                d[1], d[2], d[4], d[5] // d[2], d[6] - base))
    k4 = res.get("air780ep_4k") or {}
    for d in k4.get("downlinks", ()):
        kb = k4["base"][0] if isinstance(k4["base"], list) else k4["base"]
        L.append("| 4096 B downlinks (Air780EP), the GC on: received (turns), live heap after | %d (%d turns) | | %d B |" % (
            d[2], d[4], k4.get("live_end", 0) - kb))
    if k4.get("error"):
        L.append("| 4096 B downlinks (Air780EP) | ERROR: %s | | |" % k4["error"][-200:].replace("\n", " ").replace("|", "/"))
    L.append("")
    idle = {b: ((res.get("b%d" % b) or {}).get("cpu") or {}).get("idle") for b in BAUDS}
    shown = ", ".join("%.1f%% at %d baud" % (100.0 * max(0, v[0]) / v[1], b) for b, v in idle.items() if v and v[1])
    L.append("CPU on the board: the emulator's count of the time the RP2040 (125 MHz) executed instructions rather "
             "than waiting in WFE/WFI, interrupts included, over a window in which the app runs its own loop "
             "(App.run) while the cloud sends back-to-back downlinks, or Link.publish() sends QoS 0 back to back; "
             "per item, and in parentheses net of the idle app loop's own share over the window's time (a lower "
             "bound: the idle loop keeps the CPU busy %s of the time). The app's log lines are formatted but not "
             "written to the USB console in these windows (the emulator's USB is far slower than a board's; the "
             "console's own cost is the last table). XIP cache misses are not modelled, so silicon can be somewhat "
             "slower. Against the wire time of the same bytes (a +MSUB downlink; AT+MPUB out and its OK back):"
             % (shown or "?"))
    L.append("")
    L.append("| | baud | CPU per item (net of the idle loop) | wire time per item | fraction (net) | target |")
    L.append("|---|---|---|---|---|---|")
    for b in BAUDS:
        for lbl, us, net, w, f in s["cpu"].get(b, ()):
            t = TARGET_CPU[b]
            L.append("| %s | %d | %d us (%d us) | %d us | %.0f%% (%.0f%%) | < %d%% %s |" % (
                lbl, b, us, net, w, 100 * f, 100.0 * net / w, 100 * t, "**met**" if f < t else "**NOT met**"))
    if r.get("log_line"):
        L.append("")
        L.append("| the app's downlink log line | made and written to the USB console | made only |")
        L.append("|---|---|---|")
        for size, written, made in r["log_line"]:
            L.append("| %d B payload | %d us | %d us |" % (size, written, made))
    if r.get("mem_info"):
        L.append("")
        L.append("micropython.mem_info() on the board at the end: `%s`" % "`, `".join(r["mem_info"]))
    return "\n".join(L)


def board_rows(b):
    """The rows of make bench's table (tools/bench/__main__.py)."""
    if b.get("skipped"):
        yield ("Board (emulated Pico)", "not measured: %s" % b["skipped"], "", "")
        return
    s = b.get("summary") or {}
    u = s.get("unix") or {}

    def beside(key):
        return " (unix port: %d B)" % u[key] if u.get(key) is not None else ""
    if "live_up" in s:
        yield ("Board: MicroPython's own live heap at a fresh REPL (emulated Pico, %s)" % b.get("image", ""),
               "%d B" % s["boot"], "", "")
        yield ("Board: the firmware's live heap once connected (mqtt, NTP, .mpy from flash, default config): "
               "what a Pico user pays", "%d B = %.1f KiB%s" % (s["live_up"], s["live_up"] / 1024.0, beside("live_up")),
               "<= 32 KiB", "**met**" if s["live_up"] <= TARGET_LIVE else "**NOT met**")
        yield ("Board: peak between two gc.collect() (live + the largest step)", "%d B%s" % (
            s["peak"], "; with 4 KB downlinks %d B" % s["peak_4k"] if s.get("peak_4k") else ""), "", "")
        if s.get("per_uplink") is not None:
            yield ("Board: bytes allocated per QoS 1 uplink", "%d B%s" % (s["per_uplink"], beside("per_uplink")), "", "")
        for size in (64, 1024):
            if s.get("per_downlink_%d" % size) is not None:
                yield ("Board: bytes allocated per %d B downlink (whole app)" % size, "%d B%s" % (
                    s["per_downlink_%d" % size], beside("per_downlink") if size == 64 else ""), "", "")
        if s.get("per_qos0") is not None:
            yield ("Board: bytes allocated per QoS 0 publish", "%d B%s" % (s["per_qos0"], beside("per_qos0")), "", "")
    for baud in BAUDS:
        for lbl, us, net, w, f in s.get("cpu", {}).get(baud, s.get("cpu", {}).get(str(baud), ())):
            t = TARGET_CPU[baud]
            yield ("Board CPU: %s at %d baud (RP2040 cycles, whole app)" % (lbl, baud),
                   "%d us = %.0f%% of its %d us wire time (net of the idle loop %.0f%%)" % (us, 100 * f, w, 100.0 * net / w),
                   "< %d%%" % (100 * t), "**met**" if f < t else "**NOT met**")
    for key in SESSIONS:
        if (b.get(key) or {}).get("error"):
            yield ("Board session %s" % key, "ERROR: %s" % b[key]["error"][-200:].replace("\n", " "), "", "")


def main(argv=None):
    ap = parser(__doc__, "fewer messages", sessions=",".join(SESSIONS))
    ap.add_argument("--no-unix", action="store_true", help="without the unix port's figures beside")
    a = ap.parse_args(argv)
    with figures(a.json) as result:
        result.update(measure(a.quick, a.sessions.split(","), not a.no_unix))
        say(result.get("findings") or result.get("skipped"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
