"""A virtual MicroPython board for mpremote and make deploy (`make vboard`).

Two kinds:
- the emulated Pico (tools/board/): the real rp2 port, RPI_PICO, in an RP2040 emulator; its
  REPL on socket://127.0.0.1:N, its UART1 wired to a virtual Air724 module and the local
  cloud, a config.json for that world written next to its flash image. The default when
  the emulator kit is there (RP2EMU, see tools/board/kit.py).
- the unix port (`micropython -i`) behind a pseudo-terminal: quick, no kit needed; a
  directory plays its flash.

    python -m tools.harness.vboard [--flash DIR] [--unix] [--image v1.26.1] [--port N]
    make deploy PORT=<the port it prints> [CONFIG=DIR/config.json]  # in another shell
    make repl PORT=<the port it prints>                             # Ctrl-C stops main.py

The unix-port board behaves as a board does on the points mpremote and a user meet:
- Ctrl-C interrupts running code (KeyboardInterrupt; the pty is raw, so the host side
  turns the byte into SIGINT while code runs) and is a plain byte at the prompt;
- a soft reset (Ctrl-D at the prompt, or the one mpremote sends on connecting) starts a
  fresh interpreter: nothing stays imported from before; "MPY: soft reboot", boot.py, and
  main.py when it came from the friendly REPL (a raw-REPL soft reset stays in the raw REPL);
- its flash directory is the whole file system (a VfsPosix rooted there is mounted at
  /): `:/lib/x.py` lands in DIR/lib/x.py, never in the host's /lib;
- output nobody reads is kept (64 KiB) for the next client instead of blocking the board.
"""
import argparse
import errno
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty

from tools.proc import ROOT, Started, micropython_bin
from tools.proc import stop as stop_process

SOFT_REBOOT = b"MPY: soft reboot\r\n"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
BACKLOG = 65536

# run by the interpreter before its REPL: the flash directory becomes the file system, then
# boot.py and (argv "main") main.py run as a board runs them; none of these names stay
SETUP = """import os, sys, vfs
vfs.umount("/")
vfs.mount(vfs.VfsPosix(%r), "/")
os.chdir("/")
sys.path[:] = ["", ".frozen", "/lib"]
def _vboard_run(f):
    try:
        src = open(f).read()
    except OSError:
        return
    try:
        exec(compile(src, f, "exec"), {"__name__": "__main__"})
    except BaseException as e:  # SystemExit too: the board stays at its REPL
        sys.print_exception(e)
_vboard_main = sys.argv[-1:] == ["main"]
sys.argv[:] = []
_vboard_run("boot.py")
if _vboard_main:
    _vboard_run("main.py")
del _vboard_run, _vboard_main, os, sys, vfs
"""

# read(2) on stdin: the interpreter waits at its prompt (Linux syscall numbers)
_READ_NR = {"x86_64": 0, "aarch64": 63, "armv7l": 3, "i686": 3}.get(os.uname().machine)


def _waits_on_stdin(pid):
    """True when the process sits in read(0, ...) (at its REPL), False when it runs code,
    None when this kernel does not say."""
    if _READ_NR is None:
        return None
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
    except OSError:
        return None
    if not fields or fields[0] == "running":
        return False
    try:
        return int(fields[0]) == _READ_NR and int(fields[1], 16) == 0
    except (ValueError, IndexError):
        return None


class VirtualBoard(Started):
    """`with VirtualBoard() as vb:` vb.port is the tty for mpremote, vb.flash the directory
    that holds the board's files; vb.boots counts the interpreters started (1 + soft resets)."""

    def __init__(self, flash=None, heapsize=None, micropython=None):
        self.flash = os.path.abspath(flash) if flash else None
        self.heapsize = heapsize
        self.micropython = micropython or micropython_bin()
        self.port = None
        self.boots = 0
        self.child = None
        self._tmp = None
        self._host = None  # (master, slave) of the pty mpremote opens
        self._cfd = None  # our side of the interpreter's pty
        self._raw = False  # the host last asked for the raw REPL (Ctrl-A), not Ctrl-B
        self._hold = False  # after a raw soft reset: hide the new interpreter's banner
        self._pending = b""
        self._backlog = bytearray()
        self._stopping = False
        self._thread = None

    def start(self, timeout=10.0):
        if not self.micropython:
            raise RuntimeError("no micropython interpreter: run `make venv`")
        self._tmp = tempfile.mkdtemp(prefix="vboard-")
        if self.flash is None:
            self.flash = os.path.join(self._tmp, "flash")
        os.makedirs(self.flash, exist_ok=True)
        with open(os.path.join(self._tmp, "setup.py"), "w") as f:
            f.write(SETUP % self.flash)
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._host = (master, slave)  # the slave stays open here: a client may come and go
        self.port = os.path.join(self._tmp, "tty")
        os.symlink(os.ttyname(slave), self.port)
        self._spawn(main=True)  # power-on: boot.py and main.py, as a board
        self._thread = threading.Thread(target=self._relay, name="vboard-relay", daemon=True)
        self._thread.start()
        return self

    def _spawn(self, main):
        cmd = [self.micropython]
        if self.heapsize:
            cmd += ["-X", "heapsize=%s" % self.heapsize]
        cmd += ["-i", os.path.join(self._tmp, "setup.py")] + (["main"] if main else [])
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: every byte reaches the REPL as on a USB port
        env = dict(os.environ, MICROPYPATH="")
        self.child = subprocess.Popen(cmd, cwd=self.flash, env=env, stdin=slave, stdout=slave, stderr=slave,
                                      start_new_session=True)
        os.close(slave)
        self._cfd = master
        self.boots += 1

    # ----------------------------------------------------------------------- the relay
    def _to_host(self, data):
        if self._hold:  # a raw-REPL soft reset: the new banner and prompt are not a board's
            self._pending += data
            i = self._pending.find(RAW_BANNER)
            if i < 0:
                return
            data, self._pending, self._hold = RAW_BANNER + self._pending[i + len(RAW_BANNER):], b"", False
        self._backlog += data
        if len(self._backlog) > BACKLOG:
            del self._backlog[:len(self._backlog) - BACKLOG]

    def _to_board(self, data):
        out = bytearray()
        for b in data:
            if b == 1:
                self._raw = True
            elif b == 2:
                self._raw = False
            if b == 3 and self.child.poll() is None:
                waits = _waits_on_stdin(self.child.pid)
                if waits is not True:  # code runs: KeyboardInterrupt, as the interrupt character
                    self.child.send_signal(signal.SIGINT)  # is on a board (idle: ignored)
                    if waits is False:
                        continue  # consumed; unknown: the REPL gets the byte too
            out.append(b)
        if out:
            os.write(self._cfd, bytes(out))

    def _reboot(self):
        """The interpreter exited (a soft reset, or it ended): a fresh one, as a board."""
        try:
            while True:  # what it printed last ("OK" of the raw REPL)
                chunk = os.read(self._cfd, 65536)
                if not chunk:
                    break
                self._to_host(chunk)
        except OSError:
            pass
        os.close(self._cfd)
        self._cfd = None
        self._to_host(SOFT_REBOOT)
        if self._stopping:
            return
        raw = self._raw
        self._spawn(main=not raw)
        if raw:
            self._hold = True
            os.write(self._cfd, b"\x01")

    def _relay(self):
        master = self._host[0]
        while not self._stopping:
            fds = [master] + ([self._cfd] if self._cfd is not None else [])
            try:
                r, w, _ = select.select(fds, [master] if self._backlog else [], [], 0.1)
            except (OSError, ValueError):
                break
            try:
                if master in w:
                    n = os.write(master, bytes(self._backlog[:4096]))
                    del self._backlog[:n]
                if self._cfd in r:
                    try:
                        chunk = os.read(self._cfd, 65536)
                    except OSError as e:  # EIO: the interpreter closed its side
                        if e.errno != errno.EIO:
                            raise
                        chunk = b""
                    if chunk:
                        self._to_host(chunk)
                    elif self.child.wait(5) is not None:
                        self._reboot()
                elif self.child.poll() is not None:
                    self._reboot()
                if master in r:
                    data = os.read(master, 65536)
                    if data and self._cfd is not None:
                        self._to_board(data)
            except BlockingIOError:
                pass
            except (OSError, subprocess.TimeoutExpired):
                if self._stopping:
                    break
                time.sleep(0.05)

    def alive(self):
        """The board runs (an interpreter may be between two boots)."""
        return bool(self._thread) and self._thread.is_alive()

    def stop(self):
        self._stopping = True
        if self._thread:
            self._thread.join(3)
            self._thread = None
        if self.child is not None:
            stop_process(self.child, 5)
        for fd in ([self._cfd] if self._cfd is not None else []) + list(self._host or ()):
            try:
                os.close(fd)
            except OSError:
                pass
        self._cfd = self._host = None
        if self._tmp:  # the pty link and setup, and the flash unless the caller named one (kept)
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# ------------------------------------------------------------------------- the Pico kind
def pico_board(flash, image, port=None, echo=None):
    """The emulated Pico with a world on its UART1: (pico, world, config path). world is a
    SimEnv without firmware (the local cloud + a virtual Air724); the config is that of the
    board tier (tools/board/env.py)."""
    from tools.board import kit as kitmod
    from tools.board.env import board_config, put
    from tools.board.pico import Pico
    from tools.harness.env import SimEnv

    kit = kitmod.find(images=(image,))
    os.makedirs(flash, exist_ok=True)
    world = SimEnv(start_firmware=False).start()
    try:
        pico = Pico(kit, image, uart1=("127.0.0.1", world.vm.port), fs=os.path.join(flash, "pico-fs.img"),
                    echo=echo, repl_port=port).start()
    except BaseException:
        world.stop()
        raise
    try:  # this cloud's CA (config "ca"), which a module that verifies checks it with
        cfg = board_config(world)
        put(pico.port, world.cloud.ca_file, ":" + cfg["ca"])
    except BaseException:
        pico.stop()
        world.stop()
        raise
    config = os.path.join(flash, "config.json")
    with open(config, "w") as f:
        json.dump(cfg, f, indent=1)
    return pico, world, config


def cfg_ca(config):
    with open(config) as f:
        return json.load(f)["ca"]


def main():
    ap = argparse.ArgumentParser(prog="python -m tools.harness.vboard", description=__doc__.split("\n")[0])
    ap.add_argument("--flash", help="directory that plays the board's flash (default: a temporary one)")
    ap.add_argument("--unix", action="store_true", help="the unix port even when the emulated Pico is there")
    ap.add_argument("--image", default="v1.28.0", help="emulated Pico: MicroPython v1.28.0 or v1.26.1")
    ap.add_argument("--port", type=int, help="emulated Pico: its REPL's TCP port (default: a free one)")
    ap.add_argument("--heapsize", help="unix port: MicroPython heap, e.g. 192k like a small board")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # stop cleanly
    pico = None
    if not args.unix:
        from tools.board.kit import KitMissing

        flash = os.path.abspath(args.flash or tempfile.mkdtemp(prefix="vboard-pico-"))
        try:
            pico, world, config = pico_board(flash, args.image, args.port)
        except KitMissing as e:
            print("vboard: %s; the unix port instead" % e, file=sys.stderr)
        except (RuntimeError, TimeoutError) as e:
            print("vboard: %s" % e, file=sys.stderr)
            return 1
    if pico is not None:
        rel = os.path.relpath(config) if config.startswith(os.getcwd() + os.sep) else config
        print("emulated Pico (MicroPython %s, RPI_PICO) on %s, flash kept in %s" % (args.image, pico.port, pico.fs))
        print("UART1 -> a virtual Air724 at %s, on the local cloud (demo device); %s is its config "
              "(the cloud's CA is on the board as :%s)" % (world.vm.url, rel, cfg_ca(config)))
        print("  make deploy PORT=%s CONFIG=%s" % (pico.port, rel))
        print("  make repl PORT=%s" % pico.port)
        print("Ctrl-C stops it.")
        try:
            while pico.alive():
                time.sleep(0.5)
            print("vboard: the emulator exited", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        finally:
            pico.stop()
            world.stop()
        return 0
    try:
        vb = VirtualBoard(flash=args.flash, heapsize=args.heapsize).start()
    except RuntimeError as e:
        print("vboard: %s" % e, file=sys.stderr)
        return 1
    print("virtual board (unix port) on %s, flash in %s" % (vb.port, vb.flash))
    print("  make deploy PORT=%s" % vb.port)
    print("  %s/.venv/bin/mpremote connect %s repl" % (ROOT, vb.port))
    print("Ctrl-C stops it.")
    try:
        while vb.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        vb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
