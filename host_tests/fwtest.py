# Test helpers that run under CPython (pytest) and MicroPython (host_tests/mprun.py):
# a scripted stub UART and a `raises` helper. Test modules named test_fw_*.py use only
# these and plain asserts, so the same file runs under both interpreters.


class StubUART:
    """A scripted UART with machine.UART's read/readinto/write/any.

    script: list of (expected_write, reply). When the bytes written so far complete
    `expected_write`, `reply` becomes readable. A reply is bytes, or a list whose items
    are bytes (made readable one after another) or ints (that many empty reads, or any()
    calls that find nothing, pass before the next item: a delay without a clock).
    chunk: at most this many bytes per read (to split replies at every boundary).
    Unscripted writes are recorded and fail the test only when strict=True.
    """

    def __init__(self, script=(), chunk=0, strict=True):
        self.written = bytearray()
        self.writes = []  # (bytes read by the host before this write, data)
        self.nread = 0
        self._pending = bytearray()
        self._rx = bytearray()
        self._later = []
        self._wait = 0
        self.script = list(script)
        self.chunk = chunk
        self.strict = strict

    # -- test side --
    def feed(self, data):
        """Make bytes readable now (an unsolicited line, garbage...)."""
        self._rx += data

    def later(self, *items):
        """Queue bytes/delays exactly like a scripted reply."""
        self._later.extend(items)

    def done(self):
        return not self.script and not self._later

    # -- UART side --
    def write(self, b):
        self.writes.append((self.nread, bytes(b)))
        self.written += b
        self._pending += b
        while self.script:
            want, reply = self.script[0]
            n = len(want)
            if len(self._pending) < n:
                if self.strict and bytes(self._pending) != want[: len(self._pending)]:
                    raise AssertionError("UART got %r, script expects %r" % (bytes(self._pending), want))
                break
            got = bytes(self._pending[:n])
            if got != want:
                if self.strict:
                    raise AssertionError("UART got %r, script expects %r" % (got, want))
                break
            self._pending = self._pending[n:]
            self.script.pop(0)
            if isinstance(reply, (bytes, bytearray)):
                self._later.append(bytes(reply))
            else:
                self._later.extend(reply)
        if not self.script and self._pending and self.strict:
            raise AssertionError("UART got unscripted %r" % bytes(self._pending))
        return len(b)

    def _pump(self):
        while self._later and not self._wait:
            item = self._later[0]
            if isinstance(item, int):
                self._wait = item
                self._later.pop(0)
                break
            self._rx += item
            self._later.pop(0)

    def any(self):
        self._pump()
        n = len(self._rx)
        if not n and self._wait:  # an empty look takes a turn of a delay, as an empty read does
            self._wait -= 1
        return n  # all that is there (a read still takes at most `chunk` of it)

    def readinto(self, buf, nbytes=None):
        self._pump()
        n = len(self._rx)
        if not n:
            if self._wait:
                self._wait -= 1
            return None
        lim = len(buf) if nbytes is None else min(nbytes, len(buf))
        if self.chunk:
            lim = min(lim, self.chunk)
        n = min(n, lim)
        buf[:n] = self._rx[:n]
        self._rx = self._rx[n:]
        self.nread += n
        return n

    def read(self, nbytes=-1):
        self._pump()
        if not self._rx:
            if self._wait:
                self._wait -= 1
            return None
        n = len(self._rx) if nbytes is None or nbytes < 0 else min(nbytes, len(self._rx))
        if self.chunk:
            n = min(n, self.chunk)
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        self.nread += n
        return out


def raises(exc, fn, *args, **kw):
    """Call fn and return the exception it raises; fail if it raises nothing or another type."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))


class LogCapture:
    """Collects log lines: pass `capture.write` where a log sink is expected."""

    def __init__(self):
        self.lines = []

    def write(self, line):
        self.lines.append(line)

    def text(self):
        return "\n".join(self.lines)


def capture_log():
    """Send firmware log lines to a new LogCapture (until release_log()) and return it."""
    from firmware import log

    cap = LogCapture()
    log.sink = cap.write
    return cap


def release_log():
    from firmware import log

    log.sink = None


def tmpdir(name):
    """A new empty folder /tmp/fwtest-<name>-<ticks>-<n> (no tempfile module on MicroPython)."""
    import os

    from firmware.port import ticks_ms

    d = "/tmp/fwtest-%s-%d" % (name, ticks_ms())
    n = 0
    while True:
        try:
            os.mkdir(d + "-%d" % n)
            return d + "-%d" % n
        except OSError:
            n += 1


def rmtree(d):
    """Remove folder `d` and what it holds (nothing if it is not there)."""
    import os

    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        p = d + "/" + name
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    os.rmdir(d)


def msub(topic, payload):
    """A +MSUB downlink URC exactly as the module frames it (payload read by count)."""
    return b'\r\n+MSUB: "' + topic + b'",' + str(len(payload)).encode() + b" byte," + payload + b"\r\n"


class VirtualClock:
    """A ticks_ms clock that only moves when slept on (or advanced), starting `before_wrap` ms
    before the interpreter's ticks wrap, as a board's clock does after ~12 days. Give it to the
    engine: at.ticks = clock.ticks; at.sleep = clock.sleep (the driver's waits use those too),
    and a stub's delay of N empty reads becomes N ms of virtual time."""

    def __init__(self, before_wrap=5000):
        from firmware.port import TICKS_PERIOD

        self.period = TICKS_PERIOD
        self.now = (TICKS_PERIOD - before_wrap) % TICKS_PERIOD
        self.slept = 0  # total ms slept

    def ticks(self):
        return self.now

    def sleep(self, ms):
        ms = max(0, int(ms))
        self.slept += ms
        self.now = (self.now + ms) % self.period

    advance = sleep

    def since(self, t):
        """ms elapsed since the tick value t (wrap-safe)."""
        from firmware.port import ticks_diff

        return ticks_diff(self.now, t)


def raises_kind(kind, fn, *args, **kw):
    """Call fn and return the ModemError it raises; fail unless its kind is `kind`."""
    from firmware.errors import ModemError

    e = raises(ModemError, fn, *args, **kw)
    if e.kind != kind:
        raise AssertionError("%s raised a %r ModemError (%s), not %r" % (getattr(fn, "__name__", fn), e.kind, e, kind))
    return e


class logged:
    """with logged() as lines: the firmware's log lines meanwhile (then the log is released)."""

    def __enter__(self):
        self.cap = capture_log()
        return self.cap.lines

    def __exit__(self, *exc):
        release_log()


class PublishLink:
    """The link surface a feature module uses (publish, subscribe), recording what it is
    given; publish refuses what the module could not carry (over 4100 bytes) as the real
    link's door does, and returns `accept`."""

    def __init__(self):
        self.published = []  # (topic, payload, qos)
        self.subscriptions = []
        self.accept = True

    def publish(self, topic, payload, qos=0):
        if not isinstance(payload, (bytes, bytearray, str)) or len(payload) > 4100:
            raise ValueError("payload: over the module's 4100-byte limit")
        self.published.append((topic, payload, qos))
        return self.accept

    def subscribe(self, topic, qos=0):
        self.subscriptions.append((topic, qos))


def generators(cls, *names):
    """Give a fake driver the generator methods the firmware composes (ready_g for ready,
    cmd_g for cmd...): each calls the fake's own method and returns its value at once."""
    for name in names:
        setattr(cls, name + "_g", _generator(name))
    return cls


def _generator(name):
    def g(self, *args, **kw):
        return getattr(self, name)(*args, **kw)
        yield  # a generator that never waits

    return g
