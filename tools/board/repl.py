"""A MicroPython REPL as the host sees it through a byte stream (the emulated Pico's TCP
port, a virtual board's pty): everything the board prints is kept, as bytes and as lines,
and the raw REPL runs code the way mpremote does (Ctrl-A, code, Ctrl-D; "OK", output,
Ctrl-D, the error, Ctrl-D, ">"). One reader thread; any thread may wait on what arrived.

    with Repl.tcp("127.0.0.1", port) as r:
        r.wait_log("link: mqtt -> up", timeout=60)   # a line main.py printed
        r.interrupt()                                 # Ctrl-C, as a user types it
        out = r.exec("import gc; gc.collect(); print(gc.mem_alloc())")
"""
import os
import select
import socket
import threading
import time

from tools.proc import Started

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


class ReplError(Exception):
    """The board raised (the traceback is the message), or did not answer in time."""


class Repl(Started):
    def __init__(self, fd, closer=None, echo=None, alive=None):
        self.fd = fd
        self._closer = closer
        self.echo = echo  # callable(line) for each complete line, as it arrives
        self.alive = alive  # callable() -> False once the board is gone (a wait then ends)
        self.data = bytearray()
        self.stamps = []  # (end offset, time.monotonic()) of every chunk as it arrived
        self.closed = False
        self._cv = threading.Condition()
        self._thread = None

    @classmethod
    def tcp(cls, host, port, timeout=10.0, **kw):
        """Connect to a REPL on TCP, retrying while the port does not answer yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.create_connection((host, port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(True)
        s.settimeout(None)
        return cls(s.fileno(), s.close, **kw)

    @classmethod
    def tty(cls, path, **kw):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        return cls(fd, lambda: os.close(fd), **kw)

    def start(self):
        if self._thread:
            return self
        self._thread = threading.Thread(target=self._read, name="repl-reader", daemon=True)
        self._thread.start()
        return self

    def _read(self):
        line_start = 0
        while True:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.2)
                if not r:
                    if self.closed:
                        break
                    continue
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            with self._cv:
                if not chunk:
                    self.closed = True
                    self._cv.notify_all()
                    break
                self.data += chunk
                self.stamps.append((len(self.data), time.monotonic()))
                self._cv.notify_all()
            if self.echo:
                while True:
                    i = self.data.find(b"\n", line_start)
                    if i < 0:
                        break
                    self.echo(self.data[line_start:i].decode("utf-8", "replace").rstrip("\r"))
                    line_start = i + 1

    def stop(self):
        with self._cv:
            was, self.closed = self.closed, True
        if self._thread:
            self._thread.join(2)
        if self._closer and not getattr(self, "_shut", False):
            self._shut = True
            try:
                self._closer()
            except OSError:
                pass
        return was

    # ----------------------------------------------------------------------- output
    def write(self, data):
        view = memoryview(bytes(data))
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def mark(self):
        """Where the output is now: pass it as `since` to wait only for what comes later."""
        with self._cv:
            return len(self.data)

    def wait_for(self, test, since=0, timeout=30.0, what=None):
        """Wait until test(data[since:]) gives a true value (bytes: found in it) and return
        (value, end); TimeoutError naming `what` with the output's tail otherwise."""
        if isinstance(test, (bytes, bytearray)):
            needle = bytes(test)

            def test(buf, needle=needle):
                i = buf.find(needle)
                return i + len(needle) if i >= 0 else None
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = test(self.data[since:])
                if got:
                    return got
                left = deadline - time.monotonic()
                gone = self.closed or (self.alive is not None and not self.alive())
                if left <= 0 or gone:
                    tail = bytes(self.data[-1500:]).decode("utf-8", "replace")
                    raise TimeoutError("the board printed no %s within %.0f s (%s); last output:\n%s" % (
                        what or repr(test), timeout, "connection closed" if gone else "still running", tail))
                self._cv.wait(min(left, 0.2))

    def arrived(self, offset):
        """When the byte at `offset` of the output arrived (time.monotonic()), None if not yet."""
        with self._cv:
            for end, t in self.stamps:
                if end > offset:
                    return t
        return None

    def lines(self, since=0):
        with self._cv:
            text = bytes(self.data[since:]).decode("utf-8", "replace")
        return [ln.rstrip("\r") for ln in text.split("\n")]

    def text(self, since=0):
        return "\n".join(self.lines(since))

    def wait_log(self, match, timeout=30.0, since=0):
        """The first complete line (from byte `since`) containing `match` (or for which
        match(line) is true)."""
        pred = match if callable(match) else (lambda line: match in line)

        def test(buf):
            text = bytes(buf).decode("utf-8", "replace")
            for ln in text.split("\n")[:-1]:
                if pred(ln.rstrip("\r")):
                    return ln.rstrip("\r")
            return None
        return self.wait_for(test, since, timeout, what="line with %r" % (match,))

    # ----------------------------------------------------------------------- control
    def interrupt(self):
        """Ctrl-C: KeyboardInterrupt in what the board runs."""
        self.write(b"\x03")

    def stop_main(self, timeout=60.0):
        """Ctrl-C to the firmware's main.py: it says "stopped." and the REPL is back."""
        m = self.mark()
        self.interrupt()
        self.wait_log("stopped.", since=m, timeout=timeout)

    def raw(self, timeout=15.0):
        """Into the raw REPL from wherever the board is (running code is interrupted)."""
        for _ in range(3):
            m = self.mark()
            self.write(b"\r\x03\x03")
            time.sleep(0.1)
            self.write(b"\r\x01")
            try:
                self.wait_for(RAW_BANNER, m, timeout / 3, what="raw REPL prompt")
                return
            except TimeoutError:
                if self.closed:
                    raise
        self.wait_for(RAW_BANNER, m, 0.1, what="raw REPL prompt")

    def friendly(self):
        """Back to the friendly REPL (Ctrl-B)."""
        self.write(b"\x02")

    def soft_reset(self, timeout=30.0):
        """Ctrl-D at the raw prompt: a fresh heap; the board comes back in the raw REPL."""
        m = self.mark()
        self.write(b"\x04")
        self.wait_for(b"soft reboot\r\n", m, timeout, what="soft reboot")
        self.wait_for(RAW_BANNER, m, timeout, what="raw REPL prompt after the soft reboot")

    def exec(self, code, timeout=60.0, check=True):
        """Run `code` in the raw REPL (call raw() first) and return what it printed; with
        check, a traceback is ReplError. Returns (out, err) when check is False."""
        return self.result(self.send(code), timeout, check)

    def send(self, code):
        """Start `code` in the raw REPL and return at once: the mark to give result(); what
        it prints meanwhile can be waited for (wait_log) and answered."""
        m = self.mark()
        data = code.encode() if isinstance(code, str) else code
        for i in range(0, len(data), 256):  # as mpremote's plain raw mode does
            self.write(data[i:i + 256])
            time.sleep(0.001)
        self.write(b"\x04")
        return m

    def result(self, mark, timeout=60.0, check=True):
        """The end of a run that send() started: its output (see exec)."""
        def done(buf):
            i = buf.find(b"OK")
            j = buf.find(b"\x04", i) if i >= 0 else -1
            k = buf.find(b"\x04", j + 1) if j >= 0 else -1
            return k + 1 if k >= 0 and buf.find(b">", k) >= 0 else None
        end = self.wait_for(done, mark, timeout, what="end of a raw REPL run")
        body = bytes(self.data[mark:mark + end])
        i = body.find(b"OK")
        out, err = body[i + 2:].split(b"\x04")[:2]
        out, err = out.decode("utf-8", "replace").replace("\r\n", "\n"), err.decode("utf-8", "replace").replace("\r\n", "\n")
        if not check:
            return out, err
        if err:
            raise ReplError(err.strip())
        return out
