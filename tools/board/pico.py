"""One emulated Raspberry Pi Pico: the real MicroPython rp2 firmware (an image of the kit,
kit.py) inside the kit's RP2040 emulator, a Node process. Its REPL (USB CDC) listens on a
free TCP port of 127.0.0.1, mpremote's socket://127.0.0.1:PORT; its UART1 dials a TCP peer
(the virtual module) and redials every second; its flash filesystem lives in a file of a
private temporary directory, fresh at every start.

    with Pico(kit.find(), "v1.28.0", uart1=("127.0.0.1", vm.port)) as pico:
        pico.port                         # socket://127.0.0.1:N, for make deploy / mpremote
        with pico.repl() as r: ...        # tools/board/repl.py
        pico.resets()                     # ["force: machine.reset()", "timer: WDT expired"]

The emulator's own messages (stderr) are kept: every reboot is one line there, with its
reason, so a watchdog that fired is seen even when nobody was at the REPL. Emulated time
never runs ahead of the wall clock; time.ticks_us() on the board counts RP2040 cycles at
125 MHz, while the emulator runs about 6-8x slower than silicon when the CPU is busy.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from tools.board.repl import Repl
from tools.proc import Started
from tools.proc import stop as stop_process

RESET = re.compile(r"watchdog reset \(reason (.*)\) after ")
# --stats N: every N wall seconds, over the interval since the last such line
STATS = re.compile(r"emulated/wall ([\d.]+), busy (\d+)%.*\((\d+) emulated us of CPU per wall s\)")
FLASH_OPS = re.compile(r"flash erases/programs (\d+)/(\d+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pico(Started):
    def __init__(self, kit, image="v1.28.0", uart1=None, fs=None, echo=None, stats=0, repl_port=None):
        self.kit = kit
        self.version = image
        self.image = kit.image(image)
        self.uart1 = uart1  # (host, port) the UART dials, or None: not connected
        self.fs = fs  # keep the flash here (a file) instead of a fresh temporary one
        self.echo = echo  # callable(line) for the emulator's messages
        self.stats = stats
        self.proc = None
        self.fixed_port = repl_port  # else a free one
        self.repl_port = None
        self.messages = []
        self.samples = []  # with stats: (time.monotonic(), emulated/wall, emulated us of CPU per wall s)
        self.flash_ops = None  # with stats: (sector erases, page programs) since power-up, at the last sample
        self._cv = threading.Condition()
        self._tmp = None
        self._reader = None

    @property
    def port(self):
        return "socket://127.0.0.1:%d" % self.repl_port

    def start(self, timeout=60.0):
        self._tmp = tempfile.mkdtemp(prefix="pico-")
        fs = self.fs or os.path.join(self._tmp, "fs.img")
        for _ in range(5):  # a free port can be taken between the check and the listen
            self.repl_port = self.fixed_port or free_port()
            cmd = [self.kit.node, self.kit.runner, "--firmware", self.image, "--fs", fs,
                   "--repl", "tcp:%d" % self.repl_port, "--uart0", "none",
                   "--uart1", "connect:%s:%d" % self.uart1 if self.uart1 else "none"]
            if not self.fs:
                cmd.append("--fresh")
            if self.stats:
                cmd += ["--stats", str(self.stats)]
            self.messages = []
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
            self._reader.start()
            try:
                self.wait_message("USB CDC up", timeout)
                return self
            except (TimeoutError, RuntimeError):
                if self.fixed_port or not any("cannot listen" in m for m in self.messages):
                    self.stop()
                    raise
                stop_process(self.proc, 5)
        self.stop()
        raise RuntimeError("the emulated Pico found no free port for its REPL")

    def _read(self, proc):
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            m = STATS.search(line)
            if m:
                ops = FLASH_OPS.search(line)
                if ops:
                    self.flash_ops = (int(ops.group(1)), int(ops.group(2)))
                self.samples.append((time.monotonic(), float(m.group(1)), int(m.group(3))))
                continue
            with self._cv:
                self.messages.append(line)
                self._cv.notify_all()
            if self.echo:
                self.echo(line)
        with self._cv:
            self._cv.notify_all()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_message(self, match, timeout=30.0, since=0):
        """The first emulator message (from index `since`) containing `match`."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cv:
            while True:
                while i < len(self.messages):
                    if match in self.messages[i]:
                        return self.messages[i]
                    i += 1
                if not self.alive():
                    raise RuntimeError("the emulator exited (%s): %s" % (
                        self.proc.returncode if self.proc else "-", "\n".join(self.messages[-10:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no %r from the emulator within %.0f s; its last messages:\n%s" % (
                        match, timeout, "\n".join(self.messages[-10:])))
                self._cv.wait(min(left, 0.2))

    def cpu(self, t0, t1):
        """(busy, elapsed): emulated microseconds the RP2040 executed instructions (not
        waiting in WFE/WFI: interrupts included) and emulated microseconds that passed, over
        the wall-clock window t0..t1 (time.monotonic()), from the emulator's --stats lines
        (pro rata where a line's interval straddles the window; start with stats=...)."""
        busy = elapsed = 0.0
        for (a, _r, _c), (b, ratio, cpu) in zip(self.samples, self.samples[1:]):
            overlap = min(b, t1) - max(a, t0)
            if overlap > 0:
                busy += cpu * overlap
                elapsed += ratio * overlap * 1e6
        return busy, elapsed

    def elapsed(self):
        """Seconds of emulated time so far, from the --stats samples (0 without them)."""
        return sum(ratio * (b - a) for (a, _r, _c), (b, ratio, _c2) in zip(self.samples, self.samples[1:]))

    def resets(self):
        """The reason of every reboot since the start, in order ("force: machine.reset()",
        "timer: WDT expired")."""
        with self._cv:
            return [m.group(1) for m in map(RESET.search, self.messages) if m]

    def repl(self, echo=None):
        """A started Repl on the board's REPL port (a new client replaces an older one)."""
        return Repl.tcp("127.0.0.1", self.repl_port, echo=echo, alive=self.alive).start()

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None:
            stop_process(p, 5)
            self._reader.join(5)
            self.proc = p  # keep returncode readable; alive() is False now
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
