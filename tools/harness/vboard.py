"""A virtual MicroPython board for mpremote: the unix port (`micropython -i`) behind a raw
pseudo-terminal made by socat. The interpreter's working directory plays the board's flash.

    python -m tools.harness.vboard [--flash DIR]   # prints the tty, runs until Ctrl-C
    make deploy PORT=<tty> MPREMOTE_OPTS=resume  # then, in another shell
    .venv/bin/mpremote connect <tty> resume exec "import main"

mpremote must be given `resume`: the unix port exits on the soft reset mpremote sends by
default (and it has no machine.reset(), so deploy does not reset it). socat is a Debian
package (`make sysdeps` installs it); this script installs nothing itself.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tools.proc import ROOT, Started, micropython_bin
from tools.proc import stop as stop_process


class VirtualBoard(Started):
    """`with VirtualBoard() as vb:` vb.port is the tty for mpremote, vb.flash the directory
    that holds the board's files."""

    def __init__(self, flash=None, heapsize=None, micropython=None):
        self.flash = os.path.abspath(flash) if flash else None
        self.heapsize = heapsize
        self.micropython = micropython or micropython_bin()
        self.proc = None
        self.port = None
        self._tmp = None

    def start(self, timeout=10.0):
        socat = shutil.which("socat")
        if not socat:
            raise RuntimeError("socat not found: it makes the virtual board's pseudo-terminal; "
                               "install it with `make sysdeps` (apt-get install -y socat)")
        if not self.micropython:
            raise RuntimeError("no micropython interpreter: run `make venv`")
        self._tmp = tempfile.mkdtemp(prefix="vboard-")
        if self.flash is None:
            self.flash = os.path.join(self._tmp, "flash")
        os.makedirs(self.flash, exist_ok=True)
        self.port = os.path.join(self._tmp, "tty")
        mp = self.micropython + (" -X heapsize=%s" % self.heapsize if self.heapsize else "")
        for bad in (",", "!", '"', "'"):
            if bad in mp:
                raise RuntimeError("the micropython path %r has a character socat cannot take" % mp)
        env = dict(os.environ)
        env["MICROPYPATH"] = ""  # only the flash (the working directory) is on sys.path
        self.proc = subprocess.Popen(
            [socat, "pty,raw,echo=0,link=%s" % self.port,
             "exec:%s -i,pty,raw,echo=0,setsid,ctty,stderr" % mp],
            cwd=self.flash, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.port):
            rc = self.proc.poll()
            if rc is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.stop()
                raise RuntimeError("socat exited (%s): %s" % (rc, err.strip()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("no pseudo-terminal from socat within %.0f s" % timeout)
            time.sleep(0.02)
        return self

    def _children(self):
        """The micropython process(es) socat started (they run in their own session)."""
        if not self.proc:
            return []
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def alive(self):
        return bool(self.proc) and self.proc.poll() is None and bool(self._children())

    def stop(self):
        kids = self._children()
        p, self.proc = self.proc, None
        if p is not None:
            stop_process(p, 5)
            for pid in kids:  # the interpreter, if socat left it behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if p.stderr:
                p.stderr.close()
        if self._tmp:  # the pty link, and the flash unless the caller named one (kept)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flash", help="directory that plays the board's flash (default: a temporary one)")
    ap.add_argument("--heapsize", help="MicroPython heap, e.g. 192k like a small board")
    args = ap.parse_args()
    try:
        vb = VirtualBoard(flash=args.flash, heapsize=args.heapsize).start()
    except RuntimeError as e:
        print("vboard: %s" % e, file=sys.stderr)
        return 1
    print("virtual board on %s, flash in %s" % (vb.port, vb.flash))
    print("  make deploy PORT=%s MPREMOTE_OPTS=resume" % vb.port)
    print("  %s/.venv/bin/mpremote connect %s resume repl" % (ROOT, vb.port))
    print("Ctrl-C stops it.")
    try:
        while vb.alive():
            time.sleep(0.5)
        print("vboard: the interpreter exited (a soft reset without `resume`?)", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        vb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
