# Property-based fuzz of the receive path (issue 19): streams of what an Air72x module may
# send, against the real AT engine (firmware/at.py) and the Air72x driver (firmware/air72x.py),
# on a virtual clock that starts just before the ticks wrap. Runs unchanged under CPython
# and MicroPython: its own PRNG (not `random`), so a seed gives the same stream on both.
#
# A stream is a few parameters (receive buffer, payload deadline, read sizes, echo, clock)
# and steps: idle chatter taken in by poll(), a nap in Air72x.sleep(), or one command whose
# scripted reply is preceded, interleaved and followed by chatter. Every item carries its
# reference model (what it must cause: a downlink, a URC, a bare line it may become, or
# nothing at all), and these properties are checked after every step:
#   only-ModemError  nothing but ModemError leaves cmd(), poll() or a driver call
#   internal         no plain ModemError either (the engine's wrapper of its own bugs)
#   deadline         every command ends within its timeout (+ one read's wire time)
#   answer           return value, information lines, final, payload, exception class
#   delivery         every well-formed downlink once, in order, byte-exact, never inside a
#                    command; nothing else becomes one (drops only past the inbox budget)
#   events           URC handlers (engine) / link events (driver) exactly as injected
#   writes           the bytes written are exactly the commands and their prompt data
#   counters         at.stats["truncated"] counts exactly the truncated items
#   clock            the engine and the driver wait on at.ticks / at.sleep
#   stall            the receive path keeps taking input
#   recovery         a clean AT after the whole stream is answered
#
# Long run (`make fuzz` runs both interpreters):
#   MICROPYPATH=.:host_tests micropython host_tests/fuzzgen.py --seconds 600 --seed 1
#   python host_tests/fuzzgen.py --seconds 600 --seed 1 [--mode driver|engine] [--size 10]
# One stream, shrunk to a minimal failing one when it fails, and printed:
#   python host_tests/fuzzgen.py --one SEED --mode driver --size 10 [--show]
import sys

if __name__ == "__main__" and sys.implementation.name != "micropython":  # python host_tests/fuzzgen.py
    import os

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.dirname(_here), _here]

from fwtest import StubUART, VirtualClock  # noqa: E402

from firmware import air72x, log  # noqa: E402
from firmware.at import AT, ATAbort, ATError, ATTimeout, ModemError  # noqa: E402
from firmware.port import ticks_diff  # noqa: E402

BAUD = 115200  # the rate the engine is told (at.baud) and the stub's bytes take on the wire
INBOX_BUDGET = 16384  # downlink bytes the driver holds while one command waits (_INBOX_BYTES)
DEFAULT_MS = 5000  # the engine's default command deadline (firmware.at._TIMEOUT_MS)
ACK_MS = 15000  # the driver's deadline for MQTT commands (firmware.air72x._ACK_MS)
RAW_MAX = 4096  # the count limit the raw-engine streams register for their counted items
IDLE_MS = 6000  # virtual time one idle step may take
SIZE = 10  # steps per stream at most (the CLI's default)

MODULE_LOST = (b"RDY", b"+CPIN: SIM REMOVED", b"+CPIN: NOT INSERTED")  # every command aborts
LINK_LOST = MODULE_LOST + (b"CLOSED", b"+PDP: DEACT", b"+PDP DEACT", b"+CGEV: NW PDN DEACT", b"+SAPBR 1: DEACT")
RAW_PREFIXES = (b"+MSUB", b"CLOSED", b"+PDP", b"RDY", b"+BOOM")  # the raw engine's URC handlers
PROTO = ("echo", "info", "ok", "then", "error", "prompt", "dataecho")  # a command's own parts

ALL = bytes(range(256))
NOLF = bytes(b for b in range(256) if b != 10 and b != 13)
FILL = bytes(b for b in range(256) if b != 10 and b != 13 and b != 44)  # no line end, no ','
# what a garbage line may start with: nothing a frame, final, prompt, echo or URC starts with
LOW = b"abcdefghijklmnopqrstuvwxyz#$%&'()*-./;<=?@[]_{|}~" + bytes(range(0x80, 0xFF))
TAIL = bytes(b for b in NOLF if b != 44)
TEXT = bytes(range(32, 127))
LONG_TOPIC = b"abcdefghijklmnopqrstuvwxyz/_"
# payload pieces that a line reader would take for frames, finals, prompts, echoes, URCs
TRICKY = (
    b"\r\n", b"\r", b"\n", b'"', b"OK", b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 3\r\n",
    b'\r\n+MSUB: "/x/y",3 byte,abc\r\n', b"+MSUB: ", b" byte,", b"\x00", b"\xff", b"\r\n+CSQ: 1,1\r\n",
    b"\r\nCLOSED\r\n", b"\r\nRDY\r\n", b"\r\n> ", b"\r\nDOWNLOAD\r\n", b"\r\nAT+CSQ\r\n", b"\r\n+HTTPREAD: 5\r\n",
    b"\r\nPUBACK\r\n", b"\r\nCONNECT OK\r\n", b"\r\n+MQTTSTATU :1\r\n", b"\r\n+CGATT: 1\r\n", b"\\22", b",",
    b"\x1a", b"\x1b", b"\r\n+MSUB: 2\r\n", b"\r\n+PDP: DEACT\r\n",
)
TOPIC_FIRST = (b"/t", b"/a/b", b"/dev_1")
TOPIC_PARTS = (b"/a1mxL3s6Z7m", b"/dev_1", b"/user/get", b"/thing/service/property/set", b"/5 byte,", b"/x,5 byte,",
               b"/+", b"/#", b"/\xc3\xa9t\xc3\xa9", b"/\xe4\xb8\xad", b"/sp ace", b"/9", b"/a,b", b"/OK", b"/AT")
UNQUOTED = (b"/a/b", b"/pk/dn/user/get", b"t_1", b"/9/x")
# unsolicited lines: link events, informational ones, boot chatter, unknown ones
URC_LINES = (
    b"CLOSED", b"+PDP: DEACT", b"+PDP DEACT", b"+CGEV: NW PDN DEACT 1", b"+SAPBR 1: DEACT", b"+CGEV: ME PDN ACT 1",
    b"RDY", b"+CREG: 1", b'+CEREG: 1,"1A2B","0C3D4E5F",7', b"SMS Ready", b"+CTZV: 24/05/01,12:00:00,+32",
    b"+NITZ: 2024/05/01,12:00:00+32,0", b"^MODE: 17,17", b"+BOOM: 1", b"+QXYZ: 3", b"+MSUB: 2",
    b"+CPIN: SIM REMOVED", b"+CPIN: READY",
)
STRAY_FINALS = (b"OK", b"SUBACK", b"PUBACK", b"+HTTPACTION: 1,200,5", b"ERROR", b"CONNECT OK")
STRAY_ECHOES = (b"AT+CSQ", b"AT", b"AT+MIPCLOSE", b"ATE0")
CUT_WORDS = (b"CLOSED", b"OK", b"ERROR", b"+CSQ", b"RDY", b"PUBACK", b"+MSUB", b"CONNECT OK", b"+CME ERROR",
             b"DOWNLOAD", b"+CGATT", b"+MQTTSTATU")
OVERLONG_PREFIXES = (b"OK", b"ERROR", b"+CSQ: 3,3", b"CLOSED", b"RDY", b"+CME ERROR: 1", b'+MSUB: "/t', b"PUBACK",
                     b"+HTTPREAD: ", b"+CGATT: 1")
PUB_ABORTS = (b"CLOSED", b"RDY", b"+PDP: DEACT", b"+PDP DEACT", b"+CGEV: NW PDN DEACT 1", b"+SAPBR 1: DEACT", b"+CPIN: SIM REMOVED")
PUB_TOPICS = ("/pk/dev/user/update", "/a1mxL3s6Z7m/dev_1/user/up", "/sys/pk/dev/thing/event/property/post")


class Rng:
    """xorshift32: the same numbers on every interpreter. The generator asks only for
    below/rand/chance/pick/blob/next, so a hypothesis-driven source can stand in."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 12345) & 0xFFFFFFFF or 0x9E3779B9

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n if n > 1 else 0

    def rand(self, a, b):
        return a + self.below(b - a + 1)

    def chance(self, pct):
        return self.below(100) < pct

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def blob(self, alphabet, n):
        out = bytearray(n)
        k = len(alphabet)
        for i in range(n):
            out[i] = alphabet[self.next() % k]
        return bytes(out)


def weighted(rng, table):
    """One value of ((weight, value), ...); the first is what a shrinking source tends to."""
    r = rng.below(sum(w for w, _ in table))
    for w, v in table:
        if r < w:
            return v
        r -= w
    return table[-1][1]


def wire_ms(n):
    """How long n bytes take on the wire at BAUD (10 bits a byte), rounded up."""
    return (n * 10000 + BAUD - 1) // BAUD


def _starts(line, prefixes):
    for p in prefixes:
        if line.startswith(p):
            return True
    return False


def lines_of(data):
    """The lines a reader could cut from `data` (at LF, or at CR too), without CR/LF."""
    out = []
    for part in data.split(b"\n") + data.replace(b"\r", b"\n").split(b"\n"):
        i = 0
        while i < len(part) and part[i] == 13:
            i += 1
        j = len(part)
        while j > i and part[j - 1] == 13:
            j -= 1
        if j > i:
            out.append(part[i:j])
    return out


def escape(data):
    """The dialect's escaping inside a quoted AT+MPUB message (written here, not imported:
    the expected bytes must not come from the code under test)."""
    return data.replace(b"\\", b"\\5C").replace(b'"', b"\\22").replace(b"\r", b"\\0D").replace(b"\n", b"\\0A")


def driver_event(line):
    """The driver's link event for a URC line, as on_event receives it, or None."""
    name = None
    if line.startswith(b"CLOSED"):
        name = "closed"
    elif line.startswith(b"RDY"):
        name = "reboot"
    elif b"DEACT" in line and _starts(line, (b"+PDP", b"+CGEV", b"+SAPBR")):
        name = "pdp_deact"
    return (name, line.decode()) if name else None


def topic_of(header):
    """The topic in a +MSUB header as the engine hands it to its handler."""
    s = header.find(b'"')
    e = header.find(b'"', s + 1)
    if s >= 0 and e > s:
        return header[s + 1 : e]
    return header[header.find(b":") + 1 : header.rfind(b",")].strip()


# ------------------------------------------------------------------------------ streams
class Item:
    """Bytes (and gaps: an int N is N empty reads, 1 ms each) and what they must cause.
    msg: (topic, payload) of a well-formed downlink; line: the line URC dispatch sees;
    bare: lines it may become as information lines of a command without an info prefix;
    trunc: a truncated counted item; code/body: an error's code, an HTTPREAD payload."""

    def __init__(self, kind, pieces, line=None, msg=None, bare=(), trunc=0, code=None, body=None):
        self.kind = kind
        self.pieces = pieces
        self.line = line
        self.msg = msg
        self.bare = bare
        self.trunc = trunc
        self.code = code
        self.body = body
        gaps = n = 0
        for p in pieces:
            if isinstance(p, int):
                gaps += p
            else:
                n += len(p)
        self.gaps = gaps
        self.nbytes = n
        self.ms = gaps + wire_ms(n)

    def copy(self, pieces):
        return Item(self.kind, pieces, self.line, self.msg, self.bare, self.trunc, self.code, self.body)


class Cmd:
    """One command: how it is called, what it writes, its deadline, and its reply items.
    call: a driver method ("signal", "attached", "status", "publish") or "raw" (at.cmd)."""

    def __init__(self, call, command, timeout=DEFAULT_MS, info=None, then=None, data=None, abort=None,
                 aborts=(), args=None, ret=None):
        self.call = call
        self.command = command
        self.write = command + b"\r"
        self.timeout = timeout
        self.info = info
        self.then = then
        self.data = data
        self.abort = abort  # the abort= argument of a raw at.cmd (None: the engine's default)
        self.aborts = aborts  # URC prefixes that end this command's wait
        self.args = args
        self.ret = ret  # a driver call's return value when it succeeds
        self.items = []

    def copy(self, items):
        c = Cmd(self.call, self.command, self.timeout, self.info, self.then, self.data, self.abort, self.aborts, self.args, self.ret)
        c.items = items
        return c


class Step:
    def __init__(self, kind, items, cmd=None, ms=0):
        self.kind = kind  # "idle", "nap" (Air72x.sleep(ms)) or "cmd"
        self.items = cmd.items if cmd is not None else items
        self.cmd = cmd
        self.ms = ms

    def with_items(self, items):
        if self.cmd is not None:
            return Step("cmd", None, self.cmd.copy(items))
        return Step(self.kind, items, None, self.ms)


class Stream:
    def __init__(self, seed, mode, rxbuf, pms, cmin, cmax, echo, wrap, read_seed, steps, size=SIZE):
        self.seed = seed
        self.mode = mode
        self.rxbuf = rxbuf
        self.pms = pms  # at.payload_ms
        self.cmin = cmin  # read sizes
        self.cmax = cmax
        self.echo = echo  # the module echoes commands (and the data written at a prompt)
        self.wrap = wrap  # the clock starts this many ms before the ticks wrap
        self.read_seed = read_seed
        self.steps = steps
        self.size = size

    def with_steps(self, steps):
        return Stream(self.seed, self.mode, self.rxbuf, self.pms, self.cmin, self.cmax, self.echo, self.wrap, self.read_seed, steps, self.size)

    def with_reads(self, cmin, cmax):
        s = self.with_steps(self.steps)
        s.cmin, s.cmax = cmin, cmax
        return s


class Ctx:
    def __init__(self, mode, rxbuf, pms, echo):
        self.mode = mode
        self.rxbuf = rxbuf
        self.pms = pms
        self.echo = echo
        self.dl_max = air72x.MSUB_MAX if mode == "driver" else RAW_MAX
        self.topic_max = max(8, min(60, rxbuf // 2 - 40))


# ------------------------------------------------------------------------------ generator
def split(rng, data, gap_max):
    """data in up to four pieces; the gaps between them add up to at most gap_max ms."""
    k = rng.rand(0, 3) if len(data) > 1 else 0
    if not k:
        return [data]
    cuts = sorted(set(rng.rand(1, len(data) - 1) for _ in range(k)))
    out = []
    prev = 0
    for c in cuts:
        out.append(data[prev:c])
        prev = c
        g = rng.rand(0, gap_max // len(cuts)) if gap_max >= len(cuts) else 0
        if g:
            out.append(g)
    out.append(data[prev:])
    return out


def size(rng, most):
    r = rng.below(100)
    if r < 50:
        n = rng.rand(0, 40)
    elif r < 80:
        n = rng.rand(41, 300)
    elif r < 95:
        n = rng.rand(301, 2500)
    else:
        n = rng.rand(2501, most)
    return min(n, most)


def payload(rng, n):
    out = bytearray()
    if n > 600:
        out += rng.blob(ALL, n - 300)
    while len(out) < n:
        if rng.chance(40):
            out += rng.pick(TRICKY)
        else:
            out += rng.blob(ALL, rng.rand(1, 16))
    return bytes(out[:n])


def topic(rng, limit):
    t = rng.pick(TOPIC_FIRST)
    for _ in range(rng.rand(0, 3)):
        p = rng.pick(TOPIC_PARTS)
        if len(t) + len(p) <= limit:
            t += p
    return t


def tail(rng):
    """A line's rest that cannot be anything: starts like garbage, no line end, no ','."""
    return rng.blob(LOW, 1) + rng.blob(TAIL, rng.rand(0, 20))


def garbage(rng, ctx, overlong=True):
    segs = []
    for _ in range(rng.rand(1, 4)):
        s = rng.blob(b"\x00\xff", rng.rand(1, 3)) if rng.chance(30) else b""
        n = ctx.rxbuf + rng.rand(32, ctx.rxbuf) if overlong and rng.chance(8) else rng.rand(0, 30)
        segs.append(s + rng.blob(LOW, 1) + rng.blob(NOLF, n))
    data = segs[0]
    for s in segs[1:]:
        data += rng.pick((b"\r\n", b"\r", b"\n", b"\n\r", b"\r\r\n")) + s
    return b"\r\n" + data + b"\r\n"


def header(t, n, quoted=True):
    if quoted:
        return b'\r\n+MSUB: "' + t + b'",' + (b"%d" % n) + b" byte,"
    return b"\r\n+MSUB: " + t + b"," + (b"%d" % n) + b" byte,"


def framed(rng, ctx, data, gaps=True):
    """A counted item's pieces: short pauses inside it; sometimes a long one after its
    payload, before the CR LF that ends it (the payload is complete: it must not wait)."""
    pieces = split(rng, data, ctx.pms // 4 if gaps else 0)
    if gaps and rng.chance(10):
        pieces.append(rng.rand(ctx.pms, 2 * ctx.pms + 20))
    return pieces + [b"\r\n"]


def downlink(rng, ctx, n=None, gaps=True, quoted=True):
    quoted = quoted and not rng.chance(10)
    t = topic(rng, ctx.topic_max) if quoted else rng.pick(UNQUOTED)
    n = size(rng, ctx.dl_max) if n is None else n
    p = payload(rng, n)
    return Item("dl", framed(rng, ctx, header(t, n, quoted) + p, gaps), msg=(t, p))


def urc(rng, avoid, gaps=True):
    while True:
        line = rng.pick(URC_LINES)
        if not _starts(line, avoid):
            break
    return Item("urc", split(rng, b"\r\n" + line + b"\r\n", 20 if gaps else 0), line=line, bare=[line])


def chatter_item(rng, ctx, avoid, where, budget):
    """One unsolicited item. where: "idle", "window" (inside a command's reply) or "http"
    (an AT+HTTPREAD reply: nothing that starts with its prefix)."""
    kind = weighted(rng, ((25, "dl"), (14, "urc"), (10, "garbage"), (5, "gap"), (4, "dlbare"), (4, "overlong"),
                          (4, "ohdr"), (5, "trunc"), (4, "under"), (4, "overmax"), (4, "malformed"), (4, "cut"),
                          (2, "cached"), (3, "lateread"), (3, "echo"), (3, "final")))
    if kind == "dl":
        return downlink(rng, ctx)
    if kind == "urc":
        return urc(rng, avoid)
    if kind == "garbage":
        data = garbage(rng, ctx)
        return Item("garbage", split(rng, data, 20), bare=lines_of(data))
    if kind == "gap":
        return Item("gap", [rng.pick((rng.rand(1, 5), rng.rand(1, 5), rng.rand(10, 200), rng.rand(200, 1000)))])
    if kind == "dlbare":  # an unquoted topic
        return downlink(rng, ctx, quoted=False)
    if kind == "overlong":  # a line longer than the buffer, starting like something real
        pre = rng.pick(OVERLONG_PREFIXES)
        if where == "http" and pre.startswith(b"+HTTPREAD"):
            return None
        fill = rng.blob(FILL, ctx.rxbuf + rng.rand(32, ctx.rxbuf)) + b"x"  # no count at its end
        return Item("overlong", split(rng, b"\r\n" + pre + fill + b"\r\n", 20))
    if kind == "ohdr":  # a counted header longer than the buffer: its payload is skipped by count
        t = rng.blob(LONG_TOPIC, ctx.rxbuf + rng.rand(32, ctx.rxbuf))
        n = size(rng, ctx.dl_max)
        return Item("ohdr", split(rng, header(t, n) + payload(rng, n) + b"\r\n", ctx.pms // 4))
    if kind == "trunc":  # fewer bytes than counted, then silence past the payload deadline
        n = max(1, size(rng, ctx.dl_max))
        gap = 2 * (ctx.pms + wire_ms(n)) + 10
        if gap + wire_ms(n) > budget:
            return None
        data = header(rng.pick(TOPIC_FIRST), n) + payload(rng, rng.rand(0, n - 1))
        return Item("trunc", split(rng, data, ctx.pms // 4) + [gap, b"\r\n"], trunc=1)
    if kind == "under":  # more bytes than counted: the count wins, the rest is a line
        t = topic(rng, ctx.topic_max)
        n = size(rng, ctx.dl_max)
        p = payload(rng, n)
        rest = tail(rng)
        return Item("under", split(rng, header(t, n) + p + rest + b"\r\n", ctx.pms // 4), msg=(t, p), bare=[rest])
    if kind == "overmax":  # a count above the maximum: only the header goes
        n = ctx.dl_max + rng.rand(1, 99999) if rng.chance(70) else 12345678901
        rest = tail(rng)
        if where != "http" and rng.chance(25):
            return Item("overmax", split(rng, b"\r\n+HTTPREAD: %d\r\n" % n + rest + b"\r\n", 20), bare=[rest])
        return Item("overmax", split(rng, header(rng.pick(TOPIC_FIRST), n) + rest + b"\r\n", 20), bare=[rest])
    if kind == "lateread":  # an HTTP answer nobody asked for: read by count, then ignored
        if where == "http":
            return None
        n = min(size(rng, 3000), ctx.dl_max)
        return Item("lateread", framed(rng, ctx, b"\r\n+HTTPREAD: %d\r\n" % n + payload(rng, n)))
    if kind == "malformed":  # a counted header without a count: only that line goes
        t = rng.pick(TOPIC_FIRST)
        line = rng.pick((b'+MSUB: "' + t + b'",x byte,', b'+MSUB: "' + t + b'", byte,', b'+MSUB: "' + t + b'"7 byte,',
                         b"+HTTPREAD: ERROR"))
        if line.startswith(b"+HTTPREAD"):
            if where == "http":
                return None
        else:
            line += tail(rng)
        return Item("malformed", split(rng, b"\r\n" + line + b"\r\n", 20), line=line, bare=[line])
    if kind == "cut":  # a line cut short: its start, silence, then the next frame
        w = rng.pick(CUT_WORDS)
        frag = w[: rng.rand(1, len(w) - 1)]
        return Item("cut", [b"\r\n" + frag, rng.rand(0, 30), b"\r\n"], line=frag, bare=[frag])
    if kind == "cached":  # cached-mode notice: +MSUB without a payload
        return Item("cached", [b"\r\n+MSUB: 2\r\n"], line=b"+MSUB: 2", bare=[b"+MSUB: 2"])
    if where != "idle":
        return None
    if kind == "echo":  # a stray echo
        return Item("echo_stray", [b"\r\n" + rng.pick(STRAY_ECHOES) + b"\r\n"])
    return Item("final_stray", [b"\r\n" + rng.pick(STRAY_FINALS) + b"\r\n"])  # a late reply


def chatter(rng, ctx, budget, avoid=(), where="window", n=None):
    items = []
    for _ in range(rng.rand(0, 4) if n is None else n):
        it = chatter_item(rng, ctx, avoid, where, budget)
        if it is None or it.ms > budget:
            continue
        budget -= it.ms
        items.append(it)
    return items


def flood(rng, ctx, ms, avoid):
    """Input that keeps coming for `ms` (mostly without a pause): URCs, garbage, downlinks."""
    items = []
    t = 0
    while t < ms:
        k = rng.below(4)
        if k == 0:
            it = urc(rng, avoid, gaps=False)
        elif k == 1:
            data = garbage(rng, ctx, overlong=False)
            it = Item("garbage", [data], bare=lines_of(data))
        elif k == 2:  # sometimes long: the deadline falls inside its payload
            it = downlink(rng, ctx, n=rng.rand(0, 40) if rng.chance(85) else min(rng.rand(41, 2000), ctx.dl_max), gaps=False)
        else:
            it = Item("gap", [rng.rand(1, 3)])
        items.append(it)
        t += it.ms
    return items


class Reply:
    """Builds a command's reply items within a time budget (the part before its end)."""

    def __init__(self, rng, ctx, cmd, budget=None):
        self.rng = rng
        self.ctx = ctx
        self.cmd = cmd
        self.left = cmd.timeout // 2 - 30 if budget is None else budget
        self.where = "http" if cmd.info == b"+HTTPREAD" else "window"
        if ctx.echo:
            self.put(Item("echo", [cmd.write]))

    def put(self, it):
        self.cmd.items.append(it)
        self.left -= it.ms

    def chat(self, n=None):
        for it in chatter(self.rng, self.ctx, self.left, self.cmd.aborts, self.where, n):
            self.put(it)
        if self.ctx.mode == "driver" and self.rng.chance(3):  # more downlinks than one wait may hold
            for _ in range(self.rng.rand(3, 6)):
                it = downlink(self.rng, self.ctx, n=self.rng.rand(self.ctx.dl_max * 3 // 4, self.ctx.dl_max), gaps=False)
                if it.ms <= self.left:
                    self.put(it)

    def line(self, kind, line, **kw):
        self.put(Item(kind, split(self.rng, b"\r\n" + line + b"\r\n", 10), line=line, **kw))

    def prompt(self, text):
        self.put(Item("prompt", split(self.rng, text, 3)))
        if self.ctx.echo:
            self.put(Item("dataecho", split(self.rng, self.cmd.data, 10)))

    def abort_here(self, lines):
        """A URC that ends the wait, somewhere after the echo and the prompt."""
        items = self.cmd.items
        start = 0
        for i, it in enumerate(items):
            if it.kind in ("echo", "prompt", "dataecho"):
                start = i + 1
        line = self.rng.pick(lines)
        items.insert(self.rng.rand(start, len(items)), Item("urc", [b"\r\n" + line + b"\r\n"], line=line, bare=[line]))

    def after(self):
        """Chatter after the end of the reply: parsed when the command is over."""
        self.left = IDLE_MS // 2
        self.chat()
        return self.cmd


def _ending(r, then=None, abort_lines=(), rng=None):
    """OK (and the `then` line), with chatter between; a deliberate abort URC sometimes."""
    if abort_lines and rng.chance(12):
        r.abort_here(abort_lines)
    r.line("ok", b"OK")
    if then:
        r.chat()
        r.line("then", then)


def command_driver(rng, ctx):
    kind = weighted(rng, ((20, "signal"), (10, "attached"), (10, "status"), (14, "at"), (20, "publish"),
                          (8, "httpread"), (8, "error"), (5, "flood"), (1, "slow"), (2, "huge")))
    if kind in ("signal", "error", "slow"):
        rssi, ber = rng.pick((rng.rand(0, 31), 99)), rng.pick((rng.rand(0, 7), 99))
        c = Cmd("signal", b"AT+CSQ", info=b"+CSQ", aborts=MODULE_LOST, ret=(rssi, ber))
        info = b"+CSQ: %d,%d" % (rssi, ber)
    elif kind == "attached":
        v = rng.rand(0, 1)
        c = Cmd("attached", b"AT+CGATT?", info=b"+CGATT", aborts=MODULE_LOST, ret=v == 1)
        info = b"+CGATT: %d" % v
    elif kind == "status":
        v = rng.rand(0, 2)
        c = Cmd("status", b"AT+MQTTSTATU", info=b"+MQTTSTATU", aborts=MODULE_LOST, ret=v)
        info = b"+MQTTSTATU :%d" % v
    elif kind == "at":
        c = Cmd("raw", b"AT", aborts=MODULE_LOST)
        r = Reply(rng, ctx, c)
        r.chat()
        _ending(r, abort_lines=(b"RDY",), rng=rng)
        return r.after()
    elif kind == "huge":
        return huge(rng, ctx, MODULE_LOST)
    elif kind == "publish":
        return publish(rng, ctx)
    elif kind == "httpread":
        return httpread(rng, ctx, air72x.HTTPREAD_MAX, MODULE_LOST)
    else:  # flood: input that keeps coming past a short deadline, no final
        return flooded(rng, ctx, MODULE_LOST)
    r = Reply(rng, ctx, c)
    r.chat()
    r.line("info", info)
    r.chat()
    if kind == "error":
        code = rng.pick((None, 3, 4, 10, 30, 50, 100, 767))
        r.line("error", b"ERROR" if code is None else b"+CME ERROR: %d" % code, code=code)
    elif kind == "slow":  # no final at all: the driver call's own deadline
        r.chat()
    else:
        _ending(r, abort_lines=(b"RDY",), rng=rng)
    return r.after()


def publish(rng, ctx):
    t = rng.pick(PUB_TOPICS)
    qos = rng.rand(0, 1)
    if rng.chance(60):  # text: quoted AT+MPUB
        p = bytearray()
        for _ in range(rng.rand(0, 12)):
            p += rng.pick((rng.blob(TEXT, rng.rand(1, 10)), b"\r\n", b'"', b"\\", b"\xc3\xa9", b"\r\nOK\r\n"))
        p = bytes(p)
        c = Cmd("publish", b'AT+MPUB="' + t.encode() + b'",%d,0,"' % qos + escape(p) + b'"', timeout=ACK_MS, aborts=LINK_LOST, args=(t, p, qos))
        c.then = (b"PUBACK",) if qos else None
    else:  # binary: AT+MPUBEX, written at the '>' prompt
        p = payload(rng, rng.rand(0, 300))
        i = rng.rand(0, len(p))
        p = (b" " if rng.chance(15) else b"") + p[:i] + b"\x00" + p[i:]  # a space first: like the prompt's own
        c = Cmd("publish", b'AT+MPUBEX="' + t.encode() + b'",%d,0,%d' % (qos, len(p)), timeout=ACK_MS, data=p, aborts=LINK_LOST, args=(t, p, qos))
        c.then = (b"PUBACK",) if qos else None
    r = Reply(rng, ctx, c)
    r.chat()
    if c.data is not None:
        r.prompt(b"\r\n> ")
        r.chat()
    _ending(r, b"PUBACK" if qos else None, PUB_ABORTS, rng)
    return r.after()


def httpread(rng, ctx, most, aborts, timeout=DEFAULT_MS):
    n = min(size(rng, 3000), most)
    body = payload(rng, n)
    c = Cmd("raw", b"AT+HTTPREAD", timeout=timeout, info=b"+HTTPREAD", aborts=aborts)
    r = Reply(rng, ctx, c)
    head = b"+HTTPREAD: %d" % n
    info = Item("info", split(rng, b"\r\n" + head + b"\r\n" + body, min(ctx.pms // 4, max(0, r.left // 2 - wire_ms(n)))), line=head, body=body)
    r.left -= info.ms  # its time is kept for it: chatter gets the rest
    r.chat()
    r.cmd.items.append(info)
    r.chat()
    r.line("ok", b"OK")
    return r.after()


def huge(rng, ctx, aborts):
    """A deadline past what a board's ticks_add takes (2**29 ms and more): it must not raise."""
    c = Cmd("raw", b"AT", timeout=rng.pick((1 << 29, 1 << 30, 1 << 31, 10**10)), aborts=aborts)
    r = Reply(rng, ctx, c, budget=DEFAULT_MS // 2)
    r.chat()
    r.line("ok", b"OK")
    return r.after()


def flooded(rng, ctx, aborts):
    ms = rng.rand(20, 300)
    c = Cmd("raw", b"AT+CSQ", timeout=ms, info=b"+CSQ", aborts=aborts)
    r = Reply(rng, ctx, c, budget=0)
    if rng.chance(50):
        r.line("info", b"+CSQ: 5,5")
    for it in flood(rng, ctx, ms * 3 // 2 + 60, aborts):
        r.put(it)
    if rng.chance(50):
        r.put(Item("final_stray", [b"\r\nOK\r\n"]))  # too late to count
    return r.after()


def command_engine(rng, ctx):
    kind = weighted(rng, ((15, "at"), (20, "csq"), (15, "httpread"), (15, "mipstart"), (10, "httpdata"),
                          (8, "error"), (8, "flood"), (8, "mconnect"), (2, "huge")))
    rdy = (b"RDY",)  # the raw engine's at.aborts
    t = rng.pick((1000, 5000))
    if kind == "httpread":
        return httpread(rng, ctx, RAW_MAX, rdy, t)
    if kind == "flood":
        return flooded(rng, ctx, rdy)
    if kind == "huge":
        return huge(rng, ctx, rdy)
    if kind == "at":
        c = Cmd("raw", b"AT", timeout=t, aborts=rdy)
        r = Reply(rng, ctx, c)
        r.chat()
        _ending(r, abort_lines=rdy, rng=rng)
    elif kind in ("csq", "error"):
        c = Cmd("raw", b"AT+CSQ", timeout=t, info=b"+CSQ", aborts=rdy)
        r = Reply(rng, ctx, c)
        r.chat()
        r.line("info", b"+CSQ: %d,%d" % (rng.rand(0, 31), rng.rand(0, 7)))
        r.chat()
        if kind == "error":
            code = rng.pick((None, 3, 10, 767))
            r.line("error", b"ERROR" if code is None else b"+CME ERROR: %d" % code, code=code)
        else:
            _ending(r, abort_lines=rdy, rng=rng)
    elif kind == "mipstart":
        c = Cmd("raw", b'AT+MIPSTART="h",1883', timeout=t, then=(b"CONNECT OK", b"CONNECT FAIL"), aborts=rdy)
        r = Reply(rng, ctx, c)
        r.chat()
        r.line("ok", b"OK")
        r.chat()
        if rng.chance(25):
            r.line("info", b"STATE: IP INITIAL")
            r.line("then", b"CONNECT FAIL")
        else:
            r.line("then", b"CONNECT OK")
    elif kind == "httpdata":
        body = payload(rng, rng.rand(0, 300))
        c = Cmd("raw", b"AT+HTTPDATA=%d,20000" % len(body), timeout=t, data=body, aborts=rdy)
        r = Reply(rng, ctx, c)
        r.chat()
        r.prompt(b"\r\nDOWNLOAD\r\n")
        r.chat()
        _ending(r, abort_lines=rdy, rng=rng)
    else:  # mconnect: its own abort list replaces the default
        c = Cmd("raw", b"AT+MCONNECT=1,300", timeout=t, then=(b"CONNACK OK",), abort=(b"CLOSED",), aborts=(b"CLOSED",))
        r = Reply(rng, ctx, c)
        r.chat()
        r.line("ok", b"OK")
        r.chat()
        if rng.chance(50):
            r.abort_here((b"CLOSED",))
        r.line("then", b"CONNACK OK")
    return r.after()


def gen_stream(rng, mode, seed=0, size=SIZE):
    """A stream for `mode` ("driver": Air72x, "engine": a bare AT with its own handlers)."""
    rxbuf = rng.pick((1536, 256, 128, 512))
    pms = weighted(rng, ((3, 50), (3, 20), (2, 200), (1, 2000)))
    cmax = rng.pick((256, 64, 16, 3, 1))
    cmin = rng.rand(1, cmax)
    echo = rng.chance(30)
    wrap = rng.pick((rng.rand(0, 300), rng.rand(0, 3000), rng.rand(0, 20000)))  # most streams cross it
    read_seed = rng.next()
    ctx = Ctx(mode, rxbuf, pms, echo)
    steps = []
    for _ in range(rng.rand(1, size)):
        r = rng.below(100)
        if r < 35:
            steps.append(Step("idle", chatter(rng, ctx, IDLE_MS, where="idle", n=rng.rand(1, 5))))
        elif r < 40 and mode == "driver":  # Air72x.sleep() takes in complete lines while it waits
            items = []
            for _ in range(rng.rand(0, 3)):
                items.append(urc(rng, (), gaps=False) if rng.chance(60) else Item("garbage", [garbage(rng, ctx, False)]))
            for it in items:
                it.bare = ()
            steps.append(Step("nap", items, ms=rng.rand(1, 50)))
        else:
            steps.append(Step("cmd", None, command_driver(rng, ctx) if mode == "driver" else command_engine(rng, ctx)))
    return Stream(seed, mode, rxbuf, pms, cmin, cmax, echo, wrap, read_seed, steps, size)


def stream_for(seed, mode, size=SIZE):
    return gen_stream(Rng(seed), mode, seed, size)


def digest(stream):
    """A CRC of everything a stream sends: equal under both interpreters for a seed."""
    from binascii import crc32

    s = stream
    crc = crc32(b"%d %d %d %d %d %d %d" % (s.rxbuf, s.pms, s.cmin, s.cmax, s.echo, s.wrap, s.read_seed))
    for st in s.steps:
        if st.cmd is not None:
            crc = crc32(st.cmd.write + (st.cmd.data or b""), crc)
        for it in st.items:
            for p in it.pieces:
                crc = crc32(b"<%d>" % p if isinstance(p, int) else p, crc)
    return crc


# ------------------------------------------------------------------------------ model
class Expect:
    """What a command must do with its items."""

    def __init__(self, cmd):
        self.outcome = None  # "ok", "error", "abort", "timeout"
        self.lines = []
        self.final = b""
        self.code = None
        self.body = None
        self.live = []  # items whose bytes reach the engine (after a missed prompt: not those)
        self.wrote = False  # the prompt came in time: the data is written
        gate = True
        for it in cmd.items:
            if not gate:
                break
            self.live.append(it)
            k = it.kind
            if self.outcome is not None:
                if k == "prompt":
                    gate = False
                continue
            if k == "prompt":
                self.wrote = True
            elif k == "info":
                self.lines.append(it.line)
                self.body = it.body
            elif k == "ok":
                self.final = b"OK"
                if not cmd.then:
                    self.outcome = "ok"
            elif k == "then":
                self.outcome = "ok"
                self.final = it.line
            elif k == "error":
                self.outcome = "error"
                self.final = it.line
                self.code = it.code
            elif k == "urc" and _starts(it.line, cmd.aborts):
                self.outcome = "abort"
                self.final = it.line
        if self.outcome is None:
            self.outcome = "timeout"


class FuzzUART(StubUART):
    """The scripted stub, with a random size for every read, the bytes' wire time on the
    virtual clock, and a count of empty reads."""

    def __init__(self, clock, stream):
        super().__init__((), 0, False)
        self.clock = clock
        self.rng = Rng(stream.read_seed)
        self.cmin = stream.cmin
        self.cmax = stream.cmax
        self.empties = 0
        self._bits = 0
        self._look = (0, 0)  # (any(), bytes read) at the last look

    def _took(self, n):
        if n:
            self._bits += n * 10000
            ms = self._bits // BAUD
            if ms:
                self._bits -= ms * BAUD
                self.clock.advance(ms)
        else:
            self.empties += 1
        return n

    def any(self):
        n = super().any()
        if not n:  # an empty look is the engine's empty read (firmware/at.py reads only what any() says)
            self.empties += 1
        elif self._wait and (n, self.nread) == self._look:  # bytes held (no read since): a
            self._wait -= 1  # delay after them passes as it would on a wire (a turn of it)
        self._look = (n, self.nread)
        return n

    def readinto(self, buf, nbytes=None):
        self.chunk = self.rng.rand(self.cmin, self.cmax)
        return self._took(super().readinto(buf, nbytes))

    def read(self, nbytes=-1):
        self.chunk = self.rng.rand(self.cmin, self.cmax)
        out = super().read(nbytes)
        self._took(len(out) if out else 0)
        return out

    def idle(self):
        return not self._later and not self._rx and not self._wait

    def forget(self):
        """Drop what a command left in the script (its data, when the prompt never came)."""
        self.script = []
        self._pending = bytearray()


class Run:
    """One stream against a fresh engine (or driver), checking after every step."""

    def __init__(self, stream, sabotage=None):
        s = self.s = stream
        self.sabotage = sabotage
        self.clock = VirtualClock(before_wrap=s.wrap)
        self.uart = FuzzUART(self.clock, s)
        self.failures = []
        self.got = []  # handler calls (engine) / downlinks (driver), in order
        self.want = []  # (expected call, droppable)
        self.events = []
        self.want_events = []
        self.want_trunc = 0
        self.sim_lost = False
        self.dropped = 0
        self.checked = 0  # downlinks verified
        self.commands = 0
        self.in_cmd = False
        self._early = 0  # modem.stats["early"] at the last on_message
        self.sleeps = 0
        self.step = -1
        self.slack = 3 + wire_ms(s.cmax)
        self.limit = 4000
        for st in s.steps:
            for it in st.items:
                self.limit += 2 * it.gaps + it.nbytes
        self.driver = s.mode == "driver"
        if self.driver:
            m = self.modem = air72x.Air72x(self.uart, rxbuf=s.rxbuf)
            m.version = "AirM2M_Air724UG_V907_LTE_AT"
            m.version_number = 907
            m.on_message = self._on_message
            m.on_event = self._on_event
            at = m.at
        else:
            self.modem = None
            at = AT(self.uart, rxbuf=s.rxbuf)
            at.counted(b"+MSUB", b"byte,", RAW_MAX)
            at.counted(b"+HTTPREAD", b"\n", RAW_MAX)
            for p in RAW_PREFIXES:
                at.on(p, self._on_raw)
            at.aborts = (b"RDY",)
        self.at = at
        self.clocked = hasattr(at, "ticks") and hasattr(at, "sleep")
        at.ticks = self.clock.ticks
        at.sleep = self._sleep
        at.payload_ms = s.pms
        at.baud = BAUD
        if sabotage == "no_counted":  # a line reader: counted payloads are parsed as lines
            at._counted = []
        if sabotage == "slow_clock":  # the engine's clock runs at half speed: deadlines slip
            at.ticks = lambda: (self.clock.now - self.clock.slept // 2) % self.clock.period

    # -- recording
    def fail(self, prop, msg):
        self.failures.append((prop, self.step, msg))

    def _sleep(self, ms):
        self.sleeps += 1
        self.clock.sleep(ms)

    def _on_raw(self, line, payload):
        self.got.append(("urc", line) if payload is None else ("msg", topic_of(line), payload))
        if line.startswith(b"+BOOM"):
            raise ValueError("a URC handler's bug")

    def _on_message(self, topic, payload):
        # inside a command only when that one wait received more than the budget: the
        # oldest are handed over then instead of dropped (firmware/air72x.py, "early")
        if self.in_cmd and self.modem.stats["early"] == self._early:
            self.fail("delivery", "on_message(%r) called inside a command" % topic)
        self._early = self.modem.stats["early"]
        self.got.append(("msg", topic, payload))
        if self.sabotage == "dup":
            self.got.append(("msg", topic, payload))

    def _on_event(self, name, detail):
        if self.in_cmd:
            self.fail("events", "on_event(%s) called inside a command" % name)
        if self.sabotage != "no_events":
            self.events.append((name, detail))

    # -- the model
    def expect_item(self, it, droppable=False):
        if it.kind in PROTO:
            return
        if it.msg is not None:
            t, p = it.msg
            self.want.append((("msg", t.decode() if self.driver else t, p), droppable))
        if it.line is not None:
            if self.driver:
                ev = driver_event(it.line)
                if it.line.startswith(b"+CPIN"):  # READY is news only after the SIM was lost
                    if b"READY" not in it.line:
                        self.sim_lost = True
                        ev = ("sim_removed", it.line.decode())
                    elif self.sim_lost:
                        self.sim_lost = False
                        ev = ("sim_ready", it.line.decode())
                if ev:
                    self.want_events.append(ev)
            elif _starts(it.line, RAW_PREFIXES):
                self.want.append((("urc", it.line), False))
        self.want_trunc += it.trunc

    # -- driving
    def poll(self):
        u = self.uart
        e0 = u.empties
        r0 = u.nread
        s0 = self.sleeps
        try:
            if self.driver:
                self.modem.poll()
            else:
                self.at.poll()
        except Exception as e:
            self._exc("poll()", e, False)
        # an empty look, or a poll that read nothing (a payload's bytes held until more come)
        if (u.empties != e0 or u.nread == r0) and self.sleeps == s0:
            self.clock.sleep(1)  # a main loop polls about once a millisecond

    def settle(self):
        n = 0
        while not self.uart.idle():
            self.poll()
            n += 1
            if n > self.limit:
                self.fail("stall", "input still pending after %d polls: the receive path stopped reading" % n)
                self.uart._later = []
                self.uart._rx = bytearray()
                self.uart._wait = 0
                break
        for _ in range(3):
            self.poll()

    def _exc(self, what, e, legit):
        if not isinstance(e, ModemError):
            self.fail("only-ModemError", "%s raised %s: %r" % (what, type(e).__name__, e))
        elif (type(e) is ModemError and getattr(e, "kind", "modem") == "modem") or not legit:
            self.fail("internal", "%s raised %s: %s" % (what, type(e).__name__, e))

    def _call(self, c):
        m = self.modem
        if c.call == "signal":
            return m.signal()
        if c.call == "attached":
            return m.attached()
        if c.call == "status":
            return m.mqtt_status()
        if c.call == "publish":
            m.mqtt_connected = True
            return m.mqtt_publish(*c.args)
        return self.at.cmd(c.command, timeout=c.timeout, info=c.info, then=c.then, data=c.data, abort=c.abort)

    def command(self, c):
        self.commands += 1
        ex = Expect(c)
        first = []
        rest = []
        into = first
        for it in c.items:
            for p in it.pieces:
                into.append(p)
            if it.kind == "prompt":
                into = rest
        u = self.uart
        u.script.append((c.write, first))
        if c.data is not None:
            u.script.append((c.data, rest))
        w0 = len(u.written)
        t0 = self.clock.now
        ret = exc = None
        self.in_cmd = True
        try:
            ret = self._call(c)
        except Exception as e:
            exc = e
        self.in_cmd = False
        took = ticks_diff(self.clock.now, t0)
        u.forget()
        name = c.command[:24]
        if exc is not None:
            self._exc(name, exc, True)
        if took > c.timeout + self.slack:
            self.fail("deadline", "%r took %d ms, its deadline is %d ms" % (name, took, c.timeout))
        self._answer(c, ex, ret, exc, took)
        self.settle()
        wrote = bytes(u.written[w0:])
        want = c.write + (c.data if ex.wrote else b"")
        if wrote != want:
            self.fail("writes", "%r wrote %s, expected %s" % (name, short(wrote), short(want)))
        dl = 0
        for it in ex.live:
            if it.msg is not None and it.kind not in PROTO:
                dl += len(it.msg[1])
        for it in ex.live:  # past the budget the driver hands the oldest over early: none may be lost
            self.expect_item(it)

    def _answer(self, c, ex, ret, exc, took):
        at = self.at
        name = c.command[:24]
        if exc is None:
            got = "ok"
        elif isinstance(exc, ATTimeout):
            got = "timeout"
        elif isinstance(exc, ATError):
            got = "error"
        elif isinstance(exc, ATAbort) or getattr(exc, "kind", None) == "link":
            got = "abort"  # the driver's "link lost" for an MQTT command
        else:
            got = "%s(%s)" % (type(exc).__name__, exc)
        if got != ex.outcome:
            self.fail("answer", "%r: expected %s, got %s (final %r, lines %s)" % (name, ex.outcome, got, at.final, short_list(at.lines)))
            return
        if got == "ok":
            if c.call != "raw" and ret != c.ret:
                self.fail("answer", "%s() returned %r, the module said %r" % (c.call, ret, c.ret))
            if at.final != ex.final:
                self.fail("answer", "%r: final %r, expected %r" % (name, at.final, ex.final))
            if ex.body is not None and at.payload != ex.body:
                self.fail("answer", "%r: payload %s, expected %s" % (name, short(at.payload), short(ex.body)))
        elif got == "error" and exc.code != ex.code:
            self.fail("answer", "%r: error code %r, expected %r" % (name, exc.code, ex.code))
        elif got == "timeout" and took < c.timeout - 1:
            self.fail("answer", "%r timed out after %d ms, before its %d ms" % (name, took, c.timeout))
        if c.info is not None:
            if at.lines != ex.lines:
                self.fail("answer", "%r: information lines %s, expected %s" % (name, short_list(at.lines), short_list(ex.lines)))
            return
        allowed = {}
        for it in ex.live:
            if it.kind not in PROTO:
                for b in it.bare:
                    allowed[b] = 1
        own = [x for x in at.lines if x not in allowed]
        if own != ex.lines and not (len(at.lines) >= 16 and not own):
            self.fail("answer", "%r: information lines %s, expected %s" % (name, short_list(own), short_list(ex.lines)))

    def nap(self, st):
        self.uart.later(*[p for it in st.items for p in it.pieces])
        t0 = self.clock.now
        try:
            self.modem.sleep(st.ms)
        except Exception as e:
            self._exc("sleep()", e, False)
        took = ticks_diff(self.clock.now, t0)
        if took < st.ms or took > st.ms + 10 + self.slack:
            self.fail("clock", "Air72x.sleep(%d) took %d ms of the virtual clock" % (st.ms, took))
        self.settle()
        for it in st.items:
            self.expect_item(it)

    def check(self):
        got = self.got
        dropped = self.modem.stats["downlinks_dropped"] if self.driver else 0
        j = 0
        skipped = 0
        bad = None
        for k, (w, droppable) in enumerate(self.want):
            if j < len(got) and got[j] == w:
                j += 1
            elif droppable:
                skipped += 1
            else:
                bad = "missing or changed: expected #%d %s, got %s" % (k, short_call(w), short_call(got[j]) if j < len(got) else "nothing")
                break
        if bad is None and j < len(got):
            bad = "unexpected %s (nothing sent it)" % short_call(got[j])
        if bad is None and skipped != dropped - self.dropped:
            bad = "%d downlinks missing, the driver counted %d drops" % (skipped, dropped - self.dropped)
        if bad:
            self.fail("delivery" if self.driver or "downlink" in bad else "events", bad)
            self.want = [(x, False) for x in got]
            self.dropped = dropped  # counted from here on
        else:
            self.checked = len(got) - len([c for c in got if c[0] != "msg"])
        if self.driver and self.events != self.want_events:
            self.fail("events", "link events %r, expected %r" % (self.events[-4:], self.want_events[-4:]))
            self.want_events = list(self.events)
        t = self.at.stats.get("truncated")
        if t != self.want_trunc:
            self.fail("counters", "at.stats['truncated'] is %r, %d truncated items came" % (t, self.want_trunc))
            self.want_trunc = t or 0

    def run(self):
        level = log.level
        log.level = 1000  # the engine logs every oddity of these streams: not shown, not formatted
        try:
            return self._run()
        finally:
            log.level = level

    def _run(self):
        if not self.clocked:
            self.fail("clock", "the engine has no at.ticks / at.sleep to inject a clock into")
            return self.failures
        for i, st in enumerate(self.s.steps):
            self.step = i
            if st.kind == "cmd":
                self.command(st.cmd)
            elif st.kind == "nap":
                self.nap(st)
            else:
                self.uart.later(*[p for it in st.items for p in it.pieces])
                self.settle()
                for it in st.items:
                    self.expect_item(it)
            self.check()
            if len(self.failures) > 20:
                return self.failures
        self.step = len(self.s.steps)
        n = len(self.failures)
        probe = Cmd("raw", b"AT", aborts=(b"RDY",))
        probe.items = [Item("ok", [b"\r\nOK\r\n"])]
        self.command(probe)
        self.check()
        self.failures[n:] = [("recovery", st, m) for _, st, m in self.failures[n:]]
        return self.failures


def run_stream(stream, sabotage=None):
    """[(property, step, message)] of one stream (empty: every property held)."""
    return Run(stream, sabotage).run()


# ------------------------------------------------------------------------------ reporting
def short(b, n=60):
    if b is None:
        return "None"
    if len(b) <= n:
        return repr(b)
    return "%r...(%d bytes)" % (b[: n - 20], len(b))


def short_list(lines):
    return "[" + ", ".join(short(x, 40) for x in lines[:6]) + (", ..." if len(lines) > 6 else "") + "]"


def short_call(c):
    if c[0] == "msg":
        return "downlink %r %s" % (c[1], short(c[2], 40))
    return "URC %s" % short(c[1], 40)


def describe(stream):
    s = stream
    out = ["stream seed=%d mode=%s rxbuf=%d payload_ms=%d reads=%d..%d echo=%s clock=%d ms before the wrap" %
           (s.seed, s.mode, s.rxbuf, s.pms, s.cmin, s.cmax, s.echo, s.wrap)]
    for i, st in enumerate(s.steps):
        if st.kind == "cmd":
            c = st.cmd
            out.append("  %d cmd %s %s timeout=%d%s%s%s" % (i, c.call, short(c.command, 50), c.timeout,
                       " info=%r" % c.info if c.info else "", " then=%r" % (c.then,) if c.then else "",
                       " data=%s" % short(c.data, 30) if c.data is not None else ""))
        else:
            out.append("  %d %s%s" % (i, st.kind, " %d ms" % st.ms if st.kind == "nap" else ""))
        for it in st.items:
            parts = []
            for p in it.pieces:
                parts.append("<%d ms>" % p if isinstance(p, int) else short(p, 70))
            out.append("      %-11s %s" % (it.kind, " ".join(parts)))
    return "\n".join(out)


def props(failures):
    out = []
    for p, _, _ in failures:
        if p not in out:
            out.append(p)
    return out


def shrink(stream, prop, sabotage=None, budget=300):
    """A smaller stream that still fails `prop`: fewer steps, fewer chatter items, unsplit
    items, whole reads."""
    best = stream

    def fails(s):
        return prop in props(run_stream(s, sabotage))

    changed = True
    while changed and budget > 0:
        changed = False
        i = 0
        while i < len(best.steps) and budget > 0:
            budget -= 1
            cand = best.with_steps(best.steps[:i] + best.steps[i + 1 :])
            if fails(cand):
                best, changed = cand, True
            else:
                i += 1
        for si in range(len(best.steps)):
            j = 0
            while j < len(best.steps[si].items) and budget > 0:
                st = best.steps[si]
                it = st.items[j]
                if it.kind in PROTO:
                    j += 1
                    continue
                budget -= 1
                cand = best.with_steps(best.steps[:si] + [st.with_items(st.items[:j] + st.items[j + 1 :])] + best.steps[si + 1 :])
                if fails(cand):
                    best, changed = cand, True
                else:
                    j += 1
        for si in range(len(best.steps)):
            for j in range(len(best.steps[si].items)):
                st = best.steps[si]
                it = st.items[j]
                if len(it.pieces) < 2 or it.kind in ("trunc", "cut") or budget <= 0:
                    continue
                budget -= 1
                joined = b"".join(p for p in it.pieces if not isinstance(p, int))
                pieces = [joined] + ([it.gaps] if it.gaps else [])
                cand = best.with_steps(best.steps[:si] + [st.with_items(st.items[:j] + [it.copy(pieces)] + st.items[j + 1 :])] + best.steps[si + 1 :])
                if fails(cand):
                    best, changed = cand, True
    for cmin, cmax in ((4096, 4096), (1, 1)):
        if budget > 0 and (best.cmin, best.cmax) != (cmin, cmax):
            budget -= 1
            cand = best.with_reads(cmin, cmax)
            if fails(cand):
                best = cand
                break
    return best


class Report:
    def __init__(self):
        self.streams = 0
        self.commands = 0
        self.downlinks = 0
        self.dropped = 0  # downlinks the driver dropped past its budget (as it may)
        self.timeouts = 0
        self.truncated = 0
        self.first = {}  # property -> (stream, step, message, count)
        self.order = []

    def add(self, stream, run, failures):
        self.streams += 1
        self.commands += run.commands
        self.downlinks += run.checked
        if run.driver:
            self.dropped += run.modem.stats["downlinks_dropped"]
        self.timeouts += run.at.stats.get("timeouts", 0)
        self.truncated += run.want_trunc
        for p, st, msg in failures:
            if p not in self.first:
                self.first[p] = [stream, st, msg, 0]
                self.order.append(p)
            self.first[p][3] += 1

    def failed(self):
        return bool(self.order)

    def summary(self):
        return "%d streams, %d commands (%d timed out), %d downlinks checked (%d dropped past the budget), %d truncated items, %d properties failed%s" % (
            self.streams, self.commands, self.timeouts, self.downlinks, self.dropped, self.truncated, len(self.order),
            (": " + " ".join(self.order)) if self.order else "")

    def text(self, shrink_budget=300, sabotage=None):
        out = [self.summary()]
        for p in self.order:
            stream, st, msg, count = self.first[p]
            out.append("FAIL %s (%d times; first: seed %d, mode %s, step %d): %s" % (p, count, stream.seed, stream.mode, st, msg))
            out.append("  reproduce: python host_tests/fuzzgen.py --one %d --mode %s --size %d" % (stream.seed, stream.mode, stream.size))
            small = shrink(stream, p, sabotage, shrink_budget) if shrink_budget else stream
            fails = [f for f in run_stream(small, sabotage) if f[0] == p]
            out.append("  minimal stream (%d steps) fails with: %s" % (len(small.steps), fails[0][2] if fails else "?"))
            out.append("\n".join("  " + x for x in describe(small).split("\n")))
        return "\n".join(out)


def stream_seed(seed, i):
    return (seed * 1000003 + i * 7919 + 1) & 0x7FFFFFFF


def run_many(seed, count=None, mode="both", size=SIZE, seconds=None, sabotage=None, progress=None):
    """Streams until `count` ran or `seconds` passed; a Report."""
    import time

    rep = Report()
    t0 = time.time()
    i = 0
    while (count is None or i < count) and (seconds is None or time.time() - t0 < seconds):
        m = mode if mode != "both" else ("driver", "engine")[i % 2]
        s = stream_for(stream_seed(seed, i), m, size)
        r = Run(s, sabotage)
        rep.add(s, r, r.run())
        i += 1
        if progress and i % 200 == 0:
            progress("%d streams, %d s: %s" % (i, time.time() - t0, rep.summary()))
    return rep


def main(argv):
    opts = {"--seconds": None, "--seed": "1", "--mode": "both", "--size": str(SIZE), "--one": None, "--streams": None}
    show = "--show" in argv
    argv = [a for a in argv if a != "--show"]
    i = 0
    while i < len(argv):
        if argv[i] not in opts or i + 1 >= len(argv):
            print("usage: fuzzgen.py [--seconds S | --streams N] [--seed N] [--mode driver|engine|both] [--size K] [--one SEED [--show]]")
            return 2
        opts[argv[i]] = argv[i + 1]
        i += 2
    size = int(opts["--size"])
    if opts["--one"] is not None:
        mode = "driver" if opts["--mode"] == "both" else opts["--mode"]
        s = stream_for(int(opts["--one"]), mode, size)
        rep = Report()
        r = Run(s)
        rep.add(s, r, r.run())
        if show or not rep.failed():
            print(describe(s))
        print(rep.text() if rep.failed() else rep.summary())
        return 1 if rep.failed() else 0
    seconds = float(opts["--seconds"]) if opts["--seconds"] else None
    count = int(opts["--streams"]) if opts["--streams"] else (None if seconds else 500)
    print("fuzz: %s, seed %s, mode %s, %s" % (sys.implementation.name, opts["--seed"], opts["--mode"],
          "%d s" % seconds if seconds else "%d streams" % count))
    rep = run_many(int(opts["--seed"]), count, opts["--mode"], size, seconds, progress=print)
    print(rep.text() if rep.failed() else rep.summary())
    return 1 if rep.failed() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
