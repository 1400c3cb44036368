# The one seam between MicroPython and CPython. Firmware modules import these names
# from here and nowhere else: const, ticks_ms/ticks_diff/ticks_add, sleep_ms, hexlify,
# copier, drop, run, MICROPYTHON, TICKS_PERIOD, TICKS_MAX_MS.
import sys

MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]  (CPython fallback below)
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_ms, ticks_diff, ticks_add, sleep_ms  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython: same contract as a 32-bit board: wraps at 2**30, and
    # ticks_add refuses a delta of half the period or more (rp2 and esp32 raise OverflowError)
    import time as _time

    _PERIOD = 1 << 30
    _HALF = _PERIOD >> 1

    def ticks_ms():
        return int(_time.monotonic() * 1000) & (_PERIOD - 1)  # pyright: ignore[reportAttributeAccessIssue]

    def ticks_add(t, delta):
        if not -_HALF <= delta < _HALF:
            raise OverflowError("ticks interval overflow")
        return (t + delta) & (_PERIOD - 1)

    def ticks_diff(a, b):
        return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF

    def sleep_ms(ms):
        _time.sleep(ms / 1000)


TICKS_PERIOD = ticks_add(0, -1) + 1  # 2**30 on boards (and here on CPython); larger on unix
TICKS_MAX_MS = const(0x1FFFFFFF)  # the longest delta every board's ticks_add takes (2**29 - 1)

from binascii import hexlify  # noqa: E402, F401  (re-exported; both interpreters have it)


def time_s():
    """Seconds since the epoch as the board's RTC knows it (int)."""
    import time

    return int(time.time())


def copier(buf):
    """f(a, b) -> bytes of buf[a:b], for a bytearray that is never resized. MicroPython
    copies straight from its address (uctypes.bytes_at): bytes(memoryview(buf)[a:b]) would
    allocate a memoryview object on every call besides the bytes. Elsewhere: that slice."""
    try:
        from uctypes import addressof, bytes_at

        base = addressof(buf)
        return lambda a, b: bytes_at(base + a, b - a)
    except ImportError:  # CPython
        mv = memoryview(buf)
        return lambda a, b: bytes(mv[a:b])


def drop(name):
    """Forget the module `name` ("firmware.config") so that its code can be collected: for
    code that runs once in a while (the config checker, the HTTP auth flow). It is simply
    imported again when needed. Callers must not keep references into it."""
    sys.modules.pop(name, None)
    pkg, _, attr = name.rpartition(".")
    mod = sys.modules.get(pkg)
    if mod is not None and attr in getattr(mod, "__dict__", ()):
        delattr(mod, attr)


def run(g, wait):
    """Drive the generator g to its end; return its return value. Every value it yields is
    the ms it would wait for input: wait(ms) blocks that long (the sync API's side; the
    asyncio front awaits instead). What wait() raises is thrown into g at its yield, so
    the command's own clean-up and error handling run as if it had waited itself."""
    try:
        ms = next(g)
        while True:
            try:
                wait(ms)
            except BaseException as e:  # KeyboardInterrupt too: g's finally must run
                ms = g.throw(e)
                continue
            ms = next(g)
    except StopIteration as e:  # MicroPython and CPython: the return value is e.value
        return e.value
