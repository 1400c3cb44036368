"""`make deploy PORT=...` (python -m tools.deploy): put the firmware on a board with mpremote.

The port: a serial device (/dev/ttyUSB0, /dev/ttyACM0, COM3), a virtual board's pty, or
socket://HOST:PORT (the emulated Pico's REPL, a board behind ser2net); a port that is not
there is said in one line before mpremote runs.

1. ask the board which .mpy version it imports (sys.implementation._mpy) and refuse a
   mismatch with mpy-cross before anything is copied;
2. compile firmware/*.py with mpy-cross (MPY_CROSS_OPTS, e.g. -march=armv6m for RP2040 or
   -march=xtensawin for ESP32: only native code needs it, bytecode runs on every board) into
   a private directory;
3. in one mpremote session: remove stale firmware/*.py and *.mpy on the board (a stale .py
   would be imported instead of the new .mpy), copy firmware/*.mpy and the bundled CA
   (firmware/*.pem, for tls_verify) to :firmware/, boot.py and main.py as source (boards run
   only those as .py), the config file if there is one;
4. reset the board, so that boot.py and main.py run as after power-up, unless --no-reset:
   a board (rp2, esp32) with machine.reset() (its USB port, or the emulated Pico's TCP
   client, goes away then; nothing is read back); the unix port (the virtual board of
   tools/harness/vboard.py, which has no machine.reset()) with a soft reset from the
   friendly REPL (Ctrl-D), on which the virtual board starts a fresh interpreter running
   main.py, as a board's soft reset does.
"""
import argparse
import glob
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from tools.proc import ROOT, which


# run on the board before copying: make :firmware/ and empty it of code
CLEAN = """import os
try:
    os.mkdir('firmware')
except OSError:
    pass
for f in os.listdir('firmware'):
    if f.endswith('.py') or f.endswith('.mpy'):
        os.remove('firmware/' + f)
"""
PROBE = "import sys; print('DEPLOY', sys.platform, getattr(sys.implementation, '_mpy', 0))"


class DeployError(Exception):
    pass


def tool(name):
    found = which(name)
    if not found:
        raise DeployError("%s not found: run `make venv`" % name)
    return found


def run(cmd, what, capture=False, timeout=300):
    print("+ " + " ".join(shlex.quote(c) if "\n" not in c else "'<script>'" for c in cmd), flush=True)
    p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if p.returncode:
        detail = ((p.stdout or "") + (p.stderr or "")).strip() if capture else ""
        raise DeployError("%s failed (exit %d)%s" % (what, p.returncode, ": " + detail[-800:] if detail else ""))
    return p.stdout if capture else ""


def mpy_cross_version(mpy_cross):
    """(major, minor) that mpy-cross emits, from 'mpy-cross emitting mpy v6.3'."""
    out = run([mpy_cross, "--version"], "mpy-cross --version", capture=True)
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise DeployError("cannot read the .mpy version from %r" % out.strip())
    return int(m.group(1)), int(m.group(2))


def board_info(mpremote, port, opts):
    out = run([mpremote, "connect", port] + opts + ["exec", PROBE], "asking the board", capture=True, timeout=60)
    for line in out.splitlines():
        if line.startswith("DEPLOY "):
            _, platform, mpy = line.split()
            return platform, int(mpy)
    raise DeployError("the board did not answer the probe: %r" % out[-300:])


def check_port(port):
    """A port that cannot be there, in one line (DeployError), before mpremote tries it."""
    m = re.match(r"socket://([^:/]+):(\d+)/?$", port)
    if m:
        try:
            socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
        except OSError as e:
            raise DeployError("nothing answers at %s (%s): start the board first (make vboard prints "
                              "the emulated Pico's socket:// port)" % (port, e.strerror or e))
    elif port.startswith("socket://"):
        raise DeployError("%s is not socket://HOST:PORT" % port)
    elif port.startswith("/") and not os.path.exists(port):
        raise DeployError("%s does not exist: is the board plugged in (ls /dev/ttyUSB* /dev/ttyACM*)?" % port)


def compile_all(mpy_cross, opts, out):
    os.makedirs(os.path.join(out, "firmware"))
    files = []
    for src in sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py"))):
        dst = os.path.join(out, "firmware", os.path.basename(src)[:-3] + ".mpy")
        # -s: the name the board shows in tracebacks
        run([mpy_cross] + opts + ["-s", "firmware/" + os.path.basename(src), "-o", dst, src], "mpy-cross " + src)
        files.append(dst)
    return files


def data_files():
    """What the firmware reads from its flash besides code: the bundled CA (config "ca")."""
    return sorted(glob.glob(os.path.join(ROOT, "firmware", "*.pem")))


def soft_reset_to_main(port):
    """Ctrl-B Ctrl-D on the friendly REPL: a soft reset that runs boot.py and main.py (how
    the unix-port virtual board is reset; it has no machine.reset())."""
    import serial  # pyserial, which mpremote itself runs on

    s = serial.serial_for_url(port, baudrate=115200, timeout=1)
    try:
        s.write(b"\r\x02\x04")
        s.flush()
        time.sleep(0.2)
    finally:
        s.close()


def firmware_version():
    """firmware/__init__.py's __version__: the version's one home."""
    with open(os.path.join(ROOT, "firmware", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip('"')
    raise DeployError("firmware/__init__.py has no __version__")


def write_package_json():
    """package.json for `mpremote mip install github:OWNER/REPO`: every firmware module and
    data file (the bundled CA), by a URL relative to package.json itself (so any fork or
    branch works)."""
    path = os.path.join(ROOT, "package.json")
    version = firmware_version()
    mods = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "firmware", "*.py")) + data_files())
    rows = ",\n".join('    ["firmware/%s", "firmware/%s"]' % (m, m) for m in mods)
    with open(path, "w") as f:
        f.write('{\n  "urls": [\n%s\n  ],\n  "version": "%s"\n}\n' % (rows, version))
    print("package.json: %d modules, version %s" % (len(mods), version))


def main(argv=None):
    if argv is None and sys.argv[1:] == ["--package-json"]:
        write_package_json()
        return 0
    ap = argparse.ArgumentParser(prog="python -m tools.deploy", description="Deploy the firmware to a board with mpremote "
                                             "(or: --package-json alone rewrites package.json).")
    ap.add_argument("--port", required=True, help="serial port (/dev/ttyUSB0, COM3), a vboard tty, or "
                                                  "socket://HOST:PORT (the emulated Pico)")
    ap.add_argument("--config", default="config.json", help="config file copied as :config.json when present")
    ap.add_argument("--mpremote-opts", default="", help="extra words after `connect PORT`")
    ap.add_argument("--mpy-cross-opts", default="", help="e.g. -march=armv6m (RP2040), -march=xtensawin (ESP32)")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    args = ap.parse_args(argv)
    out = tempfile.mkdtemp(prefix="deploy-")  # not build/: `make mpy` empties that at any time
    try:
        check_port(args.port)
        mpremote, mpy_cross = tool("mpremote"), tool("mpy-cross")
        opts = shlex.split(args.mpremote_opts)
        want = mpy_cross_version(mpy_cross)
        platform, mpy = board_info(mpremote, args.port, opts)
        have = (mpy & 0xFF, (mpy >> 8) & 3)
        if mpy and have != want:
            raise DeployError("the board imports .mpy v%d.%d but mpy-cross emits v%d.%d: install the "
                              "mpy-cross that matches the board's MicroPython (v6.3: 1.23 and later), "
                              "or update the board" % (have + want))
        print("board: %s, .mpy v%d.%d" % (platform, have[0], have[1]))
        files = compile_all(mpy_cross, shlex.split(args.mpy_cross_opts), out)
        cmd = [mpremote, "connect", args.port] + opts + ["exec", CLEAN, "+", "fs", "cp"] + files + data_files() + [":firmware/"]
        for name in ("boot.py", "main.py"):  # one by one: ":" alone fails on the unix port
            cmd += ["+", "fs", "cp", os.path.join(ROOT, name), ":" + name]
        config = args.config if os.path.isabs(args.config) else os.path.join(os.getcwd(), args.config)
        if os.path.exists(config):
            cmd += ["+", "fs", "cp", config, ":config.json"]
        else:
            print("no %s: the board keeps the config it has (copy config.example.json and fill it in)" % args.config)
        unix = platform in ("linux", "darwin")
        if not args.no_reset and not unix:
            cmd += ["+", "reset"]
        run(cmd, "copying to the board")
        if not args.no_reset and unix:
            soft_reset_to_main(args.port)
        print("deployed %d modules%s%s" % (len(files), ", config" if os.path.exists(config) else "",
                                           "" if args.no_reset else ", board reset"))
        if not args.no_reset:
            print("main.py runs on the board now; its output: make repl PORT=%s" % args.port)
    except (DeployError, subprocess.TimeoutExpired) as e:
        print("deploy: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
