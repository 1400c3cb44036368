# Receive-path benchmark (run under micropython from the repository; CPython works too):
#   MICROPYPATH=. .venv/bin/micropython -m tools.bench.at [ROUNDS]     (or python -m tools.bench.at)
# Feeds one long stream of mixed module output (+MSUB downlinks of several sizes, URCs,
# replies) to firmware.at and to a char-by-char reader (read(1), concatenation, endswith)
# that extracts the same downlinks, and prints microseconds per byte, the ratio between
# them (measured in the same run), and bytes allocated per downlink.
import gc
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:
    import time

    def ticks_us():
        return int(time.perf_counter() * 1e6)

    def ticks_diff(a, b):
        return a - b

from firmware.at import AT  # noqa: E402  (after the ticks shim above)

TOPIC = b"/a1mxL3s6Z7m/866714043075174/user/get"
SIZES = (11, 64, 200, 512, 1000)


def build_stream(rounds, replies=True):
    parts = []
    n = 0
    for i in range(rounds):
        for size in SIZES:
            payload = (b'{"seq":%d,"v":"' % i) + b"x,\r\n\"" * (size // 4)
            payload = payload[:size]
            parts.append(b'\r\n+MSUB: "' + TOPIC + b'",' + str(len(payload)).encode() + b" byte," + payload + b"\r\n")
            n += 1
        if replies:
            parts.append(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\n+MQTTSTATU :1\r\n\r\nOK\r\n\r\nPUBACK\r\n")
    return b"".join(parts), n


class StreamUART:
    """Serves a prepared stream in UART-sized chunks (a board's rxbuf hands out <= 256)."""

    def __init__(self, data, chunk=256):
        self.mv = memoryview(data)
        self.pos = 0
        self.chunk = chunk
        # the chunks are cut here, before any measurement, so that readinto() allocates
        # nothing itself (as machine.UART does not) unless the reader's space is smaller
        self.chunks = [self.mv[i : i + chunk] for i in range(0, len(data), chunk)]

    def readinto(self, buf, nbytes=None):
        k, off = divmod(self.pos, self.chunk)
        if k >= len(self.chunks):
            return None
        c = self.chunks[k]
        if off == 0 and len(buf) >= len(c):
            n = len(c)
            buf[:n] = c
        else:
            n = min(len(buf), len(c) - off)
            buf[:n] = c[off : off + n]
        self.pos += n
        return n

    def read(self, n=1):
        if self.pos >= len(self.mv):
            return None
        out = bytes(self.mv[self.pos : self.pos + n])
        self.pos += n
        return out

    def write(self, b):
        return len(b)

    def any(self):
        return len(self.mv) - self.pos


def run_engine(data):
    got = [0, 0]

    def on_msub(line, payload):
        got[0] += 1
        got[1] += len(payload)

    at = AT(StreamUART(data))
    at.counted(b"+MSUB", b"byte,")
    at.on(b"+MSUB", on_msub)
    for p in (b"+CSQ", b"OK", b"+MQTTSTATU", b"PUBACK"):
        at.on(p, lambda line, payload: None)
    t0 = ticks_us()
    while at._fill():
        pass
    return ticks_diff(ticks_us(), t0), got


def run_naive(data):
    """The reader users write first: one byte at a time, a growing bytes object."""
    uart = StreamUART(data)
    got = [0, 0]
    t0 = ticks_us()
    line = b""
    while True:
        c = uart.read(1)
        if not c:
            break
        line += c
        if line.startswith(b"+MSUB") and line.endswith(b"byte,"):
            n = int(line[line.rfind(b",", 0, len(line) - 5) + 1 : -5])
            payload = b""
            while len(payload) < n:
                payload += uart.read(1)
            got[0] += 1
            got[1] += len(payload)
            line = b""
        elif line.endswith(b"\r\n"):
            line = b""
    return ticks_diff(ticks_us(), t0), got


def _heap_of(n):
    """Heap a bytes object of n bytes takes on this interpreter (header + data blocks)."""
    gc.collect()
    a0 = gc.mem_alloc()
    b = bytes(n)
    a1 = gc.mem_alloc()
    del b
    return a1 - a0


def alloc_per_downlink(data, count):
    """(bytes allocated per downlink, heap of the header and payload objects handed to the
    handler per downlink): the difference is the engine's own garbage."""
    if not hasattr(gc, "mem_alloc"):
        return None, None
    at = AT(StreamUART(data))
    at.counted(b"+MSUB", b"byte,")
    # the handler records sizes into lists made beforehand: it allocates nothing itself
    heads = [0] * count
    bodies = [0] * count
    k = [0]

    def on_msub(line, payload):
        heads[k[0]] = len(line)
        bodies[k[0]] = len(payload)
        k[0] += 1

    at.on(b"+MSUB", on_msub)
    for p in (b"+CSQ", b"OK", b"+MQTTSTATU", b"PUBACK"):
        at.on(p, lambda line, payload: None)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    while at._fill():
        pass
    a1 = gc.mem_alloc()
    gc.enable()
    assert k[0] == count, (k[0], count)
    objects = sum(_heap_of(h) + _heap_of(p) for h, p in zip(heads, bodies))
    return (a1 - a0) / count, objects / count


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 80  # long enough to time steadily
    data, count = build_stream(rounds)
    # best of 5, alternating, so both readers see the same machine load
    t_engine = t_naive = None
    for _ in range(5):
        gc.collect()  # both start from a clean heap
        t, got_e = run_engine(data)
        t_engine = t if t_engine is None else min(t, t_engine)
        gc.collect()
        t, got_n = run_naive(data)
        t_naive = t if t_naive is None else min(t, t_naive)
    assert got_e == got_n == [count, got_e[1]], (got_e, got_n)
    per_e = t_engine / len(data)
    per_n = t_naive / len(data)
    print("receive path: %d bytes, %d downlinks (%s bytes each) + URCs and replies" % (len(data), count, "/".join(str(s) for s in SIZES)))
    print("  engine      %8.3f us/byte" % per_e)
    print("  char-by-char%8.3f us/byte" % per_n)
    print("  ratio       %8.1fx (target >= 40x; best of 5 runs each)" % (per_n / per_e))
    # allocation per downlink: a stream of downlinks only (the replies above have their own)
    data, count = build_stream(rounds // 4, replies=False)
    a, objects = alloc_per_downlink(data, count)
    if a is not None:
        avg = (len(TOPIC) + got_e[1] / (5 * rounds))
        print("  allocated   %8.0f bytes per downlink (topic + payload average %.0f)" % (a, avg))
        print("  of which    %8.0f bytes are the header and payload objects handed over, "
              "%.0f the engine's own" % (objects, a - objects))


main()
