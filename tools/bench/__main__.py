"""`make bench` (python -m tools.bench): every benchmark of issue #9, one table, written to
BENCHMARKS.md.

    .venv/bin/python -m tools.bench [--out BENCHMARKS.md] [--quick] [--only at,sign,...]

Runs, each in its own process (the firmware always under the real `micropython`), the files
of this folder:
  at       at.py       receive path: us/byte, ratio against a char-by-char reader, bytes
                       allocated per downlink (under micropython)
  memory   memory.py   smallest -X heapsize (from .mpy) for 1,000 + 1,000 messages, and
                       where the memory goes (imports, objects, per message)
  wire     wire.py     QoS 0 / QoS 1 publish rate at 115200 baud against the limit set by
                       the bytes on the wire (+ the PUBACK delay)
  connect  connect.py  power-up to subscribed, both flows, against the sum of the module's
                       reply delays; AT commands sent
  sign     sign.py     one sign with hashlib and with the pure-Python fallback (micropython)
  burst    burst.py    a burst of downlinks through the whole app at 115200 baud: sent,
                       reached the module, delivered to the app (each once, in order)
  journal  journal.py  the durable outbox's flash wear: bytes written per QoS 1 message
                       (append-only segments against rewriting the queue), under micropython
  stall    stall.py    the asyncio front: how late a 10 ms ticker task runs while the link
                       connects, recovers from CLOSED and publishes QoS 1 (unix port and
                       the emulated Pico)
  rrpc     rrpc.py     RRPC answer time at the caller, idle and while publishing QoS 1
                       back to back, against the platform's 8 s
  board    board.py    on the emulated Pico (tools/board/, the real rp2 port): live heap
                       after boot and once connected, the peak between two collections,
                       bytes per message, where every KB goes, CPU against wire time
common.py holds what the host-side ones share.
Benchmarks, not tests: nothing here fails CI; the table says which targets were met on the
machine it ran on (timings are noisy on a shared machine: ratios are measured within one
run, best of N). Exit status 0 whenever every benchmark ran, whatever the figures.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from tools.proc import ROOT, micropython_bin


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    out = subprocess.run([micropython_bin(), "-c", "import sys; print(sys.version); print(sys.implementation._machine)"],
                         capture_output=True, text=True).stdout.split("\n")
    return {"cpu": cpu, "cores": os.cpu_count(), "micropython": out[0].strip(), "port": out[1].strip() if len(out) > 1 else "?"}


# ------------------------------------------------------------------------- the benchmarks
def under_micropython(name, args=()):
    """tools/bench/<name>.py under micropython, from the repository: the finished process."""
    return subprocess.run([micropython_bin(), "-m", "tools.bench." + name] + list(args), cwd=ROOT,
                          env=dict(os.environ, MICROPYPATH=ROOT), capture_output=True, text=True, timeout=600)


def run_at(quick):
    p = under_micropython("at", ["20"] if quick else [])
    out = p.stdout
    r = {"output": out.strip()}
    m = re.search(r"engine\s+([\d.]+) us/byte", out)
    r["engine_us"] = float(m.group(1)) if m else None
    m = re.search(r"char-by-char\s*([\d.]+) us/byte", out)
    r["naive_us"] = float(m.group(1)) if m else None
    m = re.search(r"ratio\s+([\d.]+)x", out)
    r["ratio"] = float(m.group(1)) if m else None
    m = re.search(r"allocated\s+(\d+) bytes per downlink \(topic \+ payload average (\d+)\)", out)
    r["alloc"], r["alloc_ref"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    m = re.search(r"of which\s+(\d+) bytes are the header and payload objects handed over, (-?\d+) the engine", out)
    r["alloc_objects"], r["alloc_engine"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    m = re.search(r"receive path: (\d+) bytes, (\d+) downlinks \(([\d/]+) bytes", out)
    r["stream"] = m.groups() if m else None
    if p.returncode:
        r["error"] = p.stderr.strip()[-500:]
    return r


def run_sign(quick):
    p = under_micropython("sign")
    r = {"output": p.stdout.strip(), "methods": {}}
    for m in re.finditer(r"(hmac\w+)\s+hashlib\s+([\d.]+) ms/sign(?:\s+fallback\s+([\d.]+) ms/sign)?", p.stdout):
        r["methods"][m.group(1)] = (float(m.group(2)), float(m.group(3)) if m.group(3) else None)
    return r


def run_json(name, args, timeout):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        p = subprocess.run([sys.executable, "-m", "tools.bench." + name, "--json", path] + args, cwd=ROOT, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(p.stdout)
        with open(path) as f:
            text = f.read()
        r = json.loads(text) if text.strip() else {"error": p.stdout[-800:]}
        if p.returncode and "error" not in r:
            r["error"] = p.stdout[-800:]
        return r
    except (subprocess.TimeoutExpired, ValueError) as e:
        return {"error": repr(e)}
    finally:
        os.unlink(path)


# ------------------------------------------------------------------------- the table
def yes(ok):
    return "**met**" if ok else "**NOT met**"


def at_rows(at):
    if at.get("ratio") is not None:
        yield ("Receive path: engine", "%.3f us/byte (char-by-char reader %.3f us/byte)" % (at["engine_us"], at["naive_us"]), "", "")
        yield ("Receive path: speed-up over a char-by-char reader (best of 5, same stream)", "%.1fx" % at["ratio"],
               ">= 40x", yes(at["ratio"] >= 40))
    if at.get("alloc") is not None:
        ok = at["alloc"] <= at["alloc_ref"] * 1.5 + 64
        split = "" if at.get("alloc_objects") is None else "; the header and payload objects handed over take %d B of it, the engine's own garbage %d B" % (
            at["alloc_objects"], at["alloc_engine"])
        yield ("Receive path: bytes allocated per downlink", "%d B (topic + payload: %d B%s)" % (at["alloc"], at["alloc_ref"], split),
               "close to topic + payload (<= 1.5x + 64 B)", yes(ok))


# the memory profile's single figures: (key, label, the figure from the profile)
PROFILE_ROWS = (
    ("imports_total", "Memory: heap taken by importing the app's modules (.mpy, gc.collect)",
     lambda p: "%d B" % (p["imports_total"] - p.get("base", 0))),
    ("import_floor_k", "Memory: smallest -X heapsize for the app's imports alone (.mpy; live after them)",
     lambda p: "%d KiB (%d B live)" % (p["import_floor_k"], p["import_live"])),
    ("live_up", "Memory: firmware's live heap once connected (gc.collect)", lambda p: "%d B" % (p["live_up"] - p.get("base", 0))),
    ("per_uplink", "Memory: bytes allocated per QoS 1 telemetry uplink (whole app loop)", lambda p: "%d B" % p["per_uplink"]),
    ("per_downlink", "Memory: bytes allocated per downlink (whole app loop, incl. the log line)", lambda p: "%d B" % p["per_downlink"]),
)


def memory_rows(mem):
    if mem.get("floor_k"):
        floors = sorted(mem["floor_k"].items(), key=lambda kv: kv[0] != "mqtt")
        # without NTP: what that feature costs, for comparison (no target)
        floors += [(flow + " (no NTP)", k) for flow, k in mem.get("no_ntp_k", {}).items()]
        for flow, k in floors:
            shown = ("%d KiB" % k) if k else "> %d KiB" % mem["hi_k"]
            target = flow in mem["floor_k"]
            yield ("Memory floor, flow %s: smallest -X heapsize (.mpy) for %d uplinks + %d downlinks" % (flow, mem["messages"], mem["messages"]),
                   shown, "<= 48 KiB" if target else "", yes(bool(k) and k <= 48) if target else "")
    rom = mem.get("romfs") or {}
    if rom.get("heap_k"):
        yield ("Memory floor, flow mqtt, the .mpy files in a ROMFS image (as on a board with a ROMFS partition): heap less the image",
               "%.0f KiB (-X heapsize=%dk holding the %d B image, which a board keeps in flash)" % (
                   rom["firmware_k"], rom["heap_k"], rom["image_bytes"]), "", "")
    elif rom.get("error"):
        yield ("Memory floor from a ROMFS image", "ERROR: %s" % rom["error"][:200], "", "")
    prof = mem.get("profile") or {}
    for key, label, figure in PROFILE_ROWS:
        if prof.get(key) is not None:
            yield (label, figure(prof), "", "")


def wire_rows(wire):
    for q in ("qos0", "qos1"):
        w = wire.get(q)
        if w:
            yield ("Wire: %s publish rate at %d baud%s" % (q.upper().replace("QOS", "QoS "), wire["baud"],
                                                         ", PUBACK delay %g s" % wire["puback_delay"] if q == "qos1" else ""),
                   "%.1f msg/s = %.0f%% of the wire limit %.1f msg/s (%d B out + %d B in per msg)" % (
                       w["rate"], 100 * w["fraction"], w["limit_rate"], w["out_per_msg"], w["in_per_msg"]),
                   ">= 90%", yes(w["fraction"] >= 0.9))


def connect_rows(con):
    for flow in ("mqtt", "http"):
        c = con.get(flow)
        if c:
            yield ("Time to connected, flow %s (power-up to SUBACK taken)" % flow,
                   "%.2f s; module delays sum %.2f s; firmware overhead %.3f s = %.1f%%; %d AT commands" % (
                       c["total_s"], c["delays_s"], c["overhead_s"], 100 * c["overhead_frac"], c["commands"]),
                   "overhead < 5%", yes(c["overhead_frac"] < 0.05))


def burst_rows(b):
    for c in b.get("cases") or ():
        if c.get("delivered") is None:
            continue
        yield ("Downlink burst: %d x %d B back to back at %d baud, QoS 1 telemetry meanwhile" % (c["n"], c["size"], b["baud"]),
               "%d delivered of %d sent (%s reached the module, %s dropped, %d twice, in order: %s)" % (
                   c["delivered"], c["sent"], c["at_module"], c["dropped"], c["duplicates"], "yes" if c["in_order"] else "no"),
               "all of them", yes(c["delivered"] == c["sent"] and not c["duplicates"]))


def sign_rows(sg):
    for meth, (hw, fb) in sg["methods"].items():
        yield ("Sign %s" % meth, "hashlib %.3f ms%s" % (hw, "; pure-Python fallback %.2f ms" % fb if fb is not None else ""),
               "fallback < 5 ms" if fb is not None else "", yes(fb < 5) if fb is not None else "")


def run_journal(quick):
    p = under_micropython("journal")
    r = {"output": p.stdout.strip(), "sizes": []}
    for m in re.finditer(r"payload\s+(\d+) B\s+journal ([\d.]+) bytes written per message.*?rewrite-the-queue ([\d.]+) "
                         r"bytes written per message", p.stdout):
        r["sizes"].append((int(m.group(1)), float(m.group(2)), float(m.group(3))))
    if p.returncode or not r["sizes"]:
        r["error"] = (p.stderr or p.stdout).strip()[-500:]
        return r
    from tools.board import kit  # the same on the emulated Pico, where the kit is

    try:
        kit.find(images=("v1.28.0",))
    except kit.KitMissing as e:
        r["board_skipped"] = str(e)
        return r
    b = subprocess.run([sys.executable, "-m", "tools.bench.journal", "--board"], cwd=ROOT, capture_output=True,
                       text=True, timeout=2400)
    r["output"] += "\n" + b.stdout.strip()
    r["board"] = [(int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5)))
                  for m in re.finditer(r"board payload\s+(\d+) B\s+journal ([\d.]+) sector erases, ([\d.]+) page programs"
                                       r".*?rewrite-the-queue ([\d.]+) sector erases, ([\d.]+) page programs", b.stdout)]
    if b.returncode or not r["board"]:
        r["error"] = (b.stderr or b.stdout).strip()[-500:]
    return r


def journal_rows(j):
    for size, per, naive in j["sizes"]:
        yield ("Durable outbox: flash bytes written per QoS 1 message, %d B payload" % size,
               "%.1f B (rewriting the queue per change: %.0f B)" % (per, naive), "append-only, < payload + 100 B",
               yes(per < size + 100))
    for size, je, jp, re_, rp in j.get("board", ()):
        yield ("Durable outbox on the emulated Pico (littlefs): flash wear per QoS 1 message, %d B payload" % size,
               "%.2f sector erases, %.2f page programs (rewriting the queue: %.2f, %.2f)" % (je, jp, re_, rp),
               "fewer erases than rewriting", yes(je < re_))


def stall_rows(r):
    from tools.bench.stall import rows  # the stall figures are that file's

    return rows(r)


def rrpc_rows(r):
    from tools.bench.rrpc import rows  # the RRPC figures are that file's

    return rows(r)


def board_rows(b):
    from tools.bench.board import board_rows as rows  # the board's figures are that file's

    return rows(b)


# (benchmark, its name in an error row, its rows), in the table's order
TABLE = (("board", "Board", board_rows), ("at", "Receive path", at_rows), ("memory", "Memory", memory_rows),
         ("wire", "Wire", wire_rows), ("connect", "Connect", connect_rows), ("sign", "Sign", sign_rows),
         ("burst", "Burst", burst_rows), ("journal", "Journal", journal_rows), ("stall", "Stall", stall_rows),
         ("rrpc", "RRPC", rrpc_rows))


def table(m, res):
    out = ["| figure | result | target | |", "|---|---|---|---|"]
    for key, label, rows in TABLE:
        r = res.get(key)
        if not r:
            continue
        found = list(rows(r))
        if r.get("error"):
            found.append((label, "ERROR: %s" % r["error"][:200], "", ""))
        out += ["| %s |" % " | ".join(x.replace("|", "\\|") for x in row) for row in found]
    return "\n".join(out)


def write_md(path, m, res, started, took):
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (python -m tools.bench) on %s, in %.0f s." % (started, took),
        "",
        "Machine: %s, %d cores; `micropython` %s (%s), the unix port from PyPI "
        "(64-bit: objects and pointers are twice a board's size)." % (m["cpu"], m["cores"], m["micropython"], m["port"]),
        "Benchmarks, not tests: timings on a shared 2-core machine are noisy; ratios are measured within one run.",
        "",
        "**What a board needs: read the Board rows** (the firmware on the real MicroPython rp2 port, an emulated "
        "Raspberry Pi Pico; section \"On a board\" below). The unix port's memory figures are 64-bit (every "
        "object and pointer twice a board's size): compare changes with them, do not size a board by them.",
        "",
        table(m, res),
        "",
        "## How each figure is measured",
        "",
        "- **Receive path** (tools/bench/at.py, under micropython): one stream of mixed module output "
        "(+MSUB downlinks of several sizes with CR/LF/quotes in the payload, +CSQ, OK, +MQTTSTATU, PUBACK) fed in "
        "256-byte UART chunks to firmware/at.py and to a char-by-char reader (read(1), bytes concatenation, "
        "endswith) extracting the same downlinks; best of 5 each, alternating. Allocation: gc.mem_alloc() "
        "difference with the GC disabled over the whole stream, divided by the downlinks; the handler only "
        "records sizes into lists made beforehand. The objects handed over are weighed with gc.mem_alloc() around "
        "bytes(n) of each header's and payload's length: what any reader that returns them as bytes must allocate. "
        "The engine's own: one memoryview per UART read (readinto at an offset); lines, headers and payloads are "
        "copied straight from the buffer's address (uctypes.bytes_at, firmware/port.py copier).",
        "- **Memory floor** (tools/bench/memory.py): the firmware compiled with mpy-cross (as `make mpy`) runs as "
        "`micropython -X heapsize=<k> -c \"import main\"` against the virtual module and the local cloud, QoS 1 "
        "telemetry every 10 ms while the console sends one downlink every 10 ms; a heap size passes when the cloud "
        "holds seq 1..N, the firmware logged all N downlinks, and no MemoryError/Traceback appeared. Bisection "
        "over 16..256 KiB in 4 KiB steps (flow mqtt), then the http flow from that floor upwards, then the mqtt "
        "flow with `\"ntp\": false` from its floor downwards (what time sync costs), then the mqtt flow from a "
        "ROMFS image of the same .mpy files (`mpremote romfs build`, read into one bytearray and mounted at /rom "
        "before `import main`: bytecode and string constants are used in place, as from a board's flash "
        "partition; the unix port has no flash, so the image's size is taken off the heap size found). A floor "
        "counts only when it passes %s runs in a row (else the next step up is tried): one pass at the edge can be "
        "luck. The profile "
        "rows come from the same file run under micropython (gc.mem_alloc() after gc.collect() per import, per "
        "phase, and with the GC disabled over many messages)." % (res.get("memory") or {}).get("confirm_runs", "?"),
        "- **Wire efficiency** (tools/bench/wire.py): a micropython driver connects with the firmware's Air72x "
        "driver and aliyun.connect(), then publishes N messages back to back with Air72x.mqtt_publish() "
        "(ticks_ms); the virtual module paces its UART at baud/10 bytes/s both ways. The limit is the exact bytes "
        "written and read in that window (from the module's log) at baud/10 bytes/s, plus the module's PUBACK "
        "delay per QoS 1 message.",
        "- **Downlink burst** (tools/bench/burst.py): main.py from .mpy against the virtual module (UART paced at "
        "115200 baud) and the local cloud, sending QoS 1 telemetry five times a second; one console connection "
        "publishes N downlinks back to back (QoS 1 at the broker). Counted: what the virtual module put on its "
        "UART, what the link took in and dropped (its stats line), and the sequence numbers the app logged, "
        "each once and in order.",
        "- **Time to connected** (tools/bench/connect.py): main.py from .mpy, timed from the interpreter's spawn "
        "to the log line `link: mqtt -> up` (printed right after SUBACK), with the module's realistic delays; "
        "overhead = total - the sum of the delays the module was configured to take (each command's reply delay, "
        "bearer, TCP/TLS connect, HTTP, CONNACK, SUBACK); best of N runs.",
        "- **Sign** (tools/bench/sign.py, under micropython): one HMAC over the seed's sign content with a "
        "32-byte secret, with hashlib and with firmware/sign.py's pure-Python MD5/SHA-1.",
        "- **Durable outbox** (tools/bench/journal.py, under micropython): 1,000 QoS 1 messages through "
        "firmware/outbox.py with a journal folder, 10 waiting for their PUBACK at any time; the bytes the journal "
        "hands to the file system per message, against writing the whole queue as one JSON file per change; "
        "then the same 200 times on the emulated Pico (the rp2 port's littlefs), where the emulator counts the "
        "4 KiB sector erases and page programs: the wear a flash chip sees (each commit of littlefs costs about "
        "one erase, so only a message's own record is flushed at once).",
        "- **Stall** (tools/bench/stall.py): an asyncio app (Device().aio(), its supervisor as a task) beside a "
        "ticker task that sleeps 10 ms in a loop; a phase's stall is the longest interval between two of the "
        "ticker's turns less the 10 ms. Phases: power-up to connected, a CLOSED the virtual module sends (the "
        "host injects it) until connected again, and QoS 1 publishes each awaited to its PUBACK. On the unix "
        "port from source against the virtual module with a real module's reply delays (connect.py), and on the "
        "emulated Pico (.mpy from its flash).",
        "- **Board** (tools/bench/board.py): the firmware deployed with `make deploy PORT=socket://...` onto the "
        "emulated Pico (MicroPython v1.28.0, RPI_PICO; tools/board/), measured on the board itself from its raw "
        "REPL: gc.mem_alloc() after gc.collect() per step, the GC off over a step for what it allocates, and the "
        "emulator's count of busy CPU time for the CPU rows (see the section).",
        "",
    ]
    extra = []
    board = res.get("board") or {}
    if board.get("findings"):
        extra += ["## On a board (emulated Raspberry Pi Pico, MicroPython %s)" % board.get("image", ""), "",
                  board["findings"], ""]
    mem = res.get("memory") or {}
    if mem.get("findings"):
        extra += ["## Where the memory goes (64-bit unix port)", "", mem["findings"], ""]
    wire = res.get("wire") or {}
    if wire.get("findings"):
        extra += ["## Where the publish time goes", "", wire["findings"], ""]
    con = res.get("connect") or {}
    if con.get("findings"):
        extra += ["## Time to connected, in detail", "", con["findings"], ""]
    lines += extra
    lines += ["## Raw output", ""]
    for k in ("at", "sign", "journal"):
        if res.get(k, {}).get("output"):
            lines += ["```", res[k]["output"], "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"), help="the Markdown file written (default BENCHMARKS.md)")
    ap.add_argument("--only", default="at,sign,wire,connect,memory,burst,journal,stall,rrpc,board",
                    help="comma-separated benchmarks to run (default: all of them)")
    ap.add_argument("--quick", action="store_true", help="fewer messages and runs (a smoke run)")
    ap.add_argument("--json", help="also write every figure here")
    a = ap.parse_args(argv)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    t0 = time.monotonic()
    m = machine()
    print("bench: %s, %d cores, micropython %s" % (m["cpu"], m["cores"], m["micropython"]), flush=True)
    res = {}
    q = ["--quick"] if a.quick else []
    for name in a.only.split(","):
        print("bench: %s ..." % name, flush=True)
        t = time.monotonic()
        if name == "at":
            res[name] = run_at(a.quick)
            print(res[name]["output"])
        elif name == "sign":
            res[name] = run_sign(a.quick)
            print(res[name]["output"])
        elif name == "journal":
            res[name] = run_journal(a.quick)
            print(res[name]["output"])
        elif name in ("memory", "wire", "connect", "burst", "rrpc"):
            res[name] = run_json(name, q, 900)
        elif name == "board":
            res[name] = run_json(name, q, 2400)
        elif name == "stall":
            res[name] = run_json(name, q, 1800)
        print("bench: %s done in %.0f s" % (name, time.monotonic() - t), flush=True)
    took = time.monotonic() - t0
    write_md(a.out, m, res, started, took)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": m, "results": res}, f, indent=1)
    print(table(m, res))
    print("bench: wrote %s in %.0f s" % (a.out, took))
    return 0


if __name__ == "__main__":
    sys.exit(main())
