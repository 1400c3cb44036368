# The AT engine: framing, final results, prompts, counted payloads and URC dispatch over
# any UART-like object (read/readinto/write/any). It knows the shape of the Air72x/Air780
# dialect (docs/at-dialect.md), not the meaning of any command: that is air72x.py's job.
#
# How a received line is classified, in this order:
#   counted item  a registered prefix whose payload is read by count (+MSUB ... byte,<n
#                 bytes>, +HTTPREAD: n\r\n<n bytes>), never by lines;
#   echo          any line starting with "AT": the command just sent (echo is on after every
#                 module reboot) or a stray one; dropped, never an answer, never logged raw;
#   final         OK / ERROR / +CME ERROR: n, or one of the command's own `then` lines
#                 (CONNECT OK, CONNACK OK, SUBACK, PUBACK, +HTTPACTION...);
#   information   a line starting with the command's `info` prefix ("+CSQ" for AT+CSQ);
#   URC           a line matching the prefix table: dispatched at once, also in the middle
#                 of another command's reply, and never taken as its answer;
#   other         while a command without an `info` prefix runs: an information line (ATI
#                 prints bare text); otherwise counted and logged as unknown.
#
# The dialect's text rules live here too: escape() for quoted strings, quoted() for values
# the module takes literally, ints() for information lines, text() for bytes shown as text.
#
# What the module sends can never wedge or fool the engine:
#   - a counted payload that stalls (no byte for payload_ms) is dropped ("truncated"), and
#     what comes after is parsed as lines again; a count above the prefix's maximum is
#     refused at once (only its header is dropped); a malformed header is an ordinary line;
#   - a line longer than the buffer is dropped to its line end; a counted header longer than
#     the buffer has its payload skipped by count, so payload bytes never become lines;
#   - data written at a prompt that the module echoes is matched byte by byte and dropped:
#     what the firmware wrote never stands in for what the module answers;
#   - cmd() ends by its deadline whatever arrives, keeps at most _LINES_MAX information
#     lines, and feeds the watchdog on every turn; only ModemError subclasses leave cmd()
#     and poll() (bytes that are not UTF-8 included), and the engine stays usable after any.
from firmware import log
from firmware.errors import ATAbort, ATError, ATTimeout, ModemError
from firmware.port import TICKS_MAX_MS, const, copier, run, sleep_ms, ticks_add, ticks_diff, ticks_ms

RXBUF = const(1536)  # receive buffer = longest line accepted
_TIMEOUT_MS = const(5000)  # default per-command deadline
_PAYLOAD_MS = const(2000)  # silence after which a counted payload is given up
_POLL_READS = const(8)  # poll() returns after at most this many reads
_LINES_MAX = const(16)  # information lines kept per command
_BAUD = const(115200)
_CHUNK = const(256)  # a streaming counted payload is read in pieces of this (or its rest)
_TAG = "at"


def escape(data):
    """Escape bytes for a quoted AT string: backslash, quote, CR, LF as \\5C \\22 \\0D \\0A.
    Nothing a user sends can end the string early or start another command. Data with none
    of them (the common case) is returned as it is: four scans, no copies."""
    if b"\\" in data or b'"' in data or b"\r" in data or b"\n" in data:
        return data.replace(b"\\", b"\\5C").replace(b'"', b"\\22").replace(b"\r", b"\\0D").replace(b"\n", b"\\0A")
    return data


def quoted(field, value):
    """A value for a quoted parameter that the module takes literally (topic, host,
    credentials), as str: refuse what would break the quoting instead of mangling it.
    The value itself is never in the error (it may be a credential). The scans run over
    its bytes (min() over a str makes a str per character: 5x slower on a Pico)."""
    if isinstance(value, str):
        raw = value.encode()
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        try:
            value = raw.decode()
        except UnicodeError:
            raise ValueError("%s: is not UTF-8" % field)
    else:
        raise TypeError("%s: a %s is not text" % (field, type(value).__name__))
    if not raw:
        raise ValueError("%s: must not be empty" % field)
    for bad in ('"', "\\"):
        if bad in value:
            raise ValueError("%s: must not contain %r" % (field, bad))
    if min(raw) < 32 or b"\x7f" in raw:  # UTF-8 bytes below 32 and 127 are those characters
        raise ValueError("%s: must not contain control characters (CR, LF, NUL...)" % field)
    return value


def ints(line):
    """The integers after the colon of an information line: b'+CSQ: 20,99' -> [20, 99]."""
    out = []
    for part in line[line.find(b":") + 1 :].split(b","):
        try:
            out.append(int(part))
        except ValueError:
            out.append(None)
    return out


def text(b):
    """Bytes from the module as printable text: UTF-8 when it is, else every byte outside
    printable ASCII as '?' (MicroPython has no errors="replace")."""
    try:
        return b.decode()
    except UnicodeError:
        return "".join(chr(c) if 31 < c < 127 else "?" for c in b)


def name(cmd):
    """How a command is named where its parameters must not show: the part before '='."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    i = cmd.find(b"=")
    return text(cmd[: i if i >= 0 else 24])


def _waiter(uart):
    """A function(ms) that returns as soon as the UART has input (or after ms), so a reply
    is taken in the moment it lands: the adapter's own wait(), or select.poll on a
    machine.UART. None (plain 1 ms sleeps) for objects poll cannot watch, like test stubs."""
    wait = getattr(uart, "wait", None)
    if wait:
        return wait
    try:
        import select

        p = select.poll()
        p.register(uart, select.POLLIN)
        return p.poll
    except Exception:
        return None


def _is_final_error(line):
    return line == b"ERROR" or line.startswith(b"+CME ERROR")


def _cme_code(line):
    try:
        return int(line[line.find(b":") + 1 :])
    except ValueError:
        return None


class AT:
    def __init__(self, uart, rxbuf=RXBUF):
        """rxbuf: the receive buffer's size, or a bytearray allocated early (one contiguous
        block is easy to find in a fresh heap, not after the imports have fragmented it)."""
        self.uart = uart
        self._buf = rxbuf if isinstance(rxbuf, bytearray) else bytearray(rxbuf)
        self._mv = memoryview(self._buf)
        self._copy = copier(self._buf)  # (a, b) -> bytes of the buffer's a..b
        self._head = 0  # first unparsed byte
        self._tail = 0  # end of received data
        self._skip = 0  # discarding: 1 an overlong line (to its LF), 2 an overlong counted header
        self._skip_term = b""  # ... whose count ends with this
        self._p_hdr = None  # header of a counted item whose payload is still arriving
        self._p_n = 0  # ... its length
        self._p_out = None  # ... a bytearray of its own when it is longer than the buffer
        self._p_have = 0  # ... bytes of it in _p_out (or skipped, when not kept)
        self._p_keep = True  # False: skip the payload by count, deliver nothing
        self._rx_at = 0  # ticks when bytes of a pending payload were last seen arriving
        self._read_at = 0  # ... when the last read of it was made (the hold's clock)
        self._seen = 0  # ... bytes the UART held unread at the last look (-1: it cannot count)
        self._held = False  # the last look held a payload's bytes back: sleep, do not poll
        self._ask = 0  # bytes the last read asked for: one that got fewer leaves more there
        self._short = False  # ... it did: no hold (stubs and sockets give less than asked)
        self._more = False  # parsing stopped at a command's final: the rest is still to parse
        self._parsing = False  # inside _parse (URC handlers run there)
        self._urcs = []  # [(prefix, handler(line, payload))]
        self._counted = []  # [(prefix, terminator, most)]
        self.idle = None  # called while waiting (feed a watchdog)
        self.ticks = ticks_ms  # the clock and the sleep of every wait (tests inject theirs)
        self.sleep = sleep_ms
        self._until_readable = _waiter(uart)
        self.payload_ms = _PAYLOAD_MS
        self.baud = _BAUD  # the UART's rate: how long a counted payload takes on the wire
        self.aborts = ()  # type: tuple  # URC prefixes that end any command's wait (b"RDY")
        self.stats = {"unknown": 0, "discarded": 0, "truncated": 0, "echo": 0, "urc": 0, "timeouts": 0}
        # state of the command in flight
        self._active = False
        self._label = ""
        self._echo = b""
        self._echoed = False  # the module echoed this command (echo is on)
        self._info = None
        self._then = None
        self._abort = ()
        self._data = None  # body to write at the DOWNLOAD / '>' prompt
        self._edata = None  # that body, being matched against the module's echo of it
        self._epos = 0  # ... bytes matched so far
        self._prompted = False  # the '>' came last: a space may still follow it
        self.data_echo = None  # learned: the module echoes prompt data (None: not known yet)
        self.lines = []  # information lines of the last command (kept after an error too)
        self.final = b""  # final line of the last command (b"": none yet)
        self.payload = None  # counted payload of the last command (+HTTPREAD)
        self._failed = False
        self._aborted = False
        self._ok = False

    # ---------------------------------------------------------------- set-up
    def on(self, prefix, handler):
        """Route URC lines starting with `prefix` to handler(line: bytes, payload)."""
        self._urcs.append((prefix, handler))

    def counted(self, prefix, terminator, most=16384):
        """Lines starting with `prefix` carry a payload: the count ends the header, which
        ends with `terminator`; then exactly that many raw bytes follow. A count above
        `most` (more than the module can send) is refused."""
        self._counted.append((prefix, terminator, most))

    # ---------------------------------------------------------------- commands
    def cmd(self, command, timeout=_TIMEOUT_MS, info=None, then=None, data=None, label=None, abort=None):
        """Send `command` and wait for its final result; return its information lines.

        info:  prefix of its information lines (b"+CSQ"): only those are its answer.
        then:  tuple of line prefixes that end the command after OK (b"CONNECT OK", ...);
               the matching line is left in self.final.
        data:  bytes written at the DOWNLOAD or '>' prompt.
        label: how the command is named in errors and logs (required for a command that
               carries credentials: the command itself is never shown then).
        abort: URC prefixes that end the wait with ATAbort (default self.aborts).
        """
        return self.run(self.cmd_g(command, timeout, info, then, data, label, abort))

    def run(self, g):
        """Drive a generator of this engine's commands (cmd_g, the driver's and the link's
        *_g methods) to its end with the blocking wait; its return value."""
        return run(g, self._wait)

    def cmd_g(self, command, timeout=_TIMEOUT_MS, info=None, then=None, data=None, label=None, abort=None):
        """cmd() as a generator: it yields the ms to wait wherever the command waits for
        input (the caller sleeps, or awaits: firmware/aio.py) and returns the lines."""
        label = label or (command if isinstance(command, str) else text(command))
        if self._active:
            raise ModemError("%s sent while %s is in flight" % (label, self._label))
        if self._parsing:  # from a handler called by the receive path: it is mid-buffer
            raise ModemError("%s sent from inside the receive path" % label)
        self.poll()  # whatever was already waiting is not this command's answer
        cmd = command.encode() if isinstance(command, str) else command
        self._label = label
        self._echo = cmd
        self._echoed = False
        self._info = info
        self._then = then
        self._abort = self.aborts if abort is None else abort
        self._data = data
        self.lines = []
        self.final = b""
        self.payload = None
        self._failed = False
        self._aborted = False
        self._ok = False
        self._active = True
        try:
            self.uart.write(cmd + b"\r")
            deadline = ticks_add(self.ticks(), min(timeout, TICKS_MAX_MS))
            while self._active:
                got = self._fill()
                if self._active and ticks_diff(deadline, self.ticks()) <= 0:
                    self.stats["timeouts"] += 1
                    raise ATTimeout(label, timeout, self._stage())
                if not got and self._active:
                    yield 1
                elif self.idle:
                    self.idle()  # a flood of bytes must not starve the watchdog
        except ModemError:
            raise
        except (OSError, MemoryError, AssertionError):  # the UART's, the heap's, a test stub's
            self._reset_rx()
            raise
        except Exception as e:  # a bug in the receive path: the engine stays usable
            self._reset_rx()
            raise ModemError("%s: receive path failed: %s" % (label, log.err(e)))
        finally:
            self._active = False
            self._data = None
            self._edata = None
        if self._aborted:
            raise ATAbort(label, text(self.final))
        if self._failed:
            raise ATError(label, _cme_code(self.final), text(self.final), self._ok)
        return self.lines

    def _stage(self):
        if self._data is not None:
            return "prompt"
        if self._then and self.final == b"OK":
            return text(b" or ".join(self._then))
        return "final result"

    def poll(self, deliver=None):
        """Process pending input (URCs, downlinks); return at once when there is none.
        deliver: called after every read that brought bytes (hand out what was parsed)."""
        try:
            for _ in range(_POLL_READS):
                if not self._fill():
                    break
                if deliver:
                    deliver()
        except ModemError:
            raise
        except (OSError, MemoryError, AssertionError):  # the UART's, the heap's, a test stub's
            self._reset_rx()
            raise
        except Exception as e:
            self._reset_rx()
            raise ModemError("receive path failed: %s" % log.err(e))

    def _wait(self, ms=1):
        """Nothing to read: feed the watchdog, then sleep until input arrives (ms at most)."""
        if self.idle:
            self.idle()
        if self._until_readable and self.sleep is sleep_ms and not self._held:
            self._until_readable(ms)
        else:
            self.sleep(ms)

    # ---------------------------------------------------------------- receive path
    def _reset_rx(self):
        self._parsing = False
        self._head = self._tail = 0
        self._more = False
        self._skip = 0
        self._p_hdr = None
        self._p_out = None

    def _fill(self):
        """Read what the UART has and parse it. False if nothing came."""
        if self._more:  # what followed the last final result: parse it before reading on
            self._more = False
            self._parse_now()
            return True
        if self._p_out is not None:  # a long payload: its bytes go straight to its buffer
            return self._fill_payload()
        buf = self._buf
        if self._tail == len(buf):
            if self._head:
                n = self._tail - self._head
                buf[0:n] = self._mv[self._head : self._tail]
                self._head = 0
                self._tail = n
            else:  # a full buffer without a line end: garbage or an overlong line
                self._overlong()
        # an empty buffer reads into the whole view: an idle poll allocates nothing, and a
        # reply that arrives in one piece needs no slice object for its read
        n = self._read(self._mv, self._tail, len(buf) - self._tail)
        if not n:
            return False
        self._tail += n
        self._parse_now()
        return True

    def _read(self, buf, off, room):
        """Read into buf[off:] (a memoryview or the payload's own bytearray) what _ready()
        allows, at most room; the view is made only when there is something to read. 0:
        nothing came (then a pending payload's stall is checked)."""
        n = self._ready(room)
        if n:
            n = self.uart.readinto((buf[off:] if off else buf) if buf is self._mv else memoryview(buf)[off:], n)
            self._short = (n or 0) < self._ask
        if not n:
            self._stalled()
            return 0
        if self._seen < 0 and self._p_hdr is not None:  # no any(): the read tells it goes on
            self._rx_at = self.ticks()
        return n

    def _ready(self, room):
        """How many bytes to read now, at most `room`: what the UART holds by its any(),
        so 0 (no read at all) when it holds nothing. On rp2 a readinto() that asks for more
        than is there waits ~1 ms for it (timeout=0) and goes on reading while bytes come
        less than 1 ms apart (timeout_char=0): the receive path then cost more CPU than the
        wire time. A UART-like without any() (test stubs) is read as far as there is room.

        The hold: while a counted payload streams in, bytes come every 87 us at 115200 and
        a read and parse cost 0.2-0.4 ms of Python, so it is not read until min(its rest,
        _CHUNK) bytes are there, or the wire time of _CHUNK (+2 ms, at most payload_ms/2)
        has passed since its last read (the UART's 4 KB buffer holds 355 ms at 115200).
        Its stall clock (_rx_at) is when any() was last seen growing, so a held payload is
        dropped when it would be unheld. Lines (finals, URCs) are never held."""
        try:
            n = self.uart.any()
        except AttributeError:
            self._seen = -1
            return room
        self._held = False
        if self._p_hdr is None or not n:
            self._seen = 0
            return n if n < room else room
        now = self.ticks()
        if n > self._seen:  # bytes came since the last look: the payload is not stalled
            self._rx_at = now
        rest = self._rest()
        if n < rest and n < _CHUNK and not self._short:
            hold = min(_CHUNK * 10000 // self.baud + 2, self.payload_ms // 2)
            if ticks_diff(now, self._read_at) < hold:
                self._seen = n
                self._held = True
                return 0
        k = n if n < room else room
        self._ask = k
        self._seen = n - k
        self._read_at = now
        return k

    def _rest(self):
        """Bytes of the pending counted payload not yet received (in the buffer or taken)."""
        if self._p_out is not None:
            return self._p_n - self._p_have
        have = self._tail - self._head
        if not self._p_keep:
            have += self._p_have
        return self._p_n - have

    def _parse_now(self):
        self._parsing = True  # a handler called from here cannot send a command
        try:
            self._parse()
        finally:
            self._parsing = False

    def busy(self):
        """A command waits, or the receive path is running (a handler called from it): a
        new command cannot be sent now."""
        return self._active or self._parsing

    def _fill_payload(self):
        out = self._p_out
        if out is None:
            return False
        n = self._read(out, self._p_have, self._p_n - self._p_have)
        if not n:
            return False
        self._p_have += n
        if self._p_have == self._p_n:
            self._p_out = None
            self._done_item(bytes(out))
        return True

    def _stalled(self):
        """No byte came: a counted payload that has been silent for payload_ms is given up."""
        if self._p_hdr is not None and ticks_diff(self.ticks(), self._rx_at) >= self.payload_ms:
            self.stats["truncated"] += 1
            have = self._p_have if self._p_out is not None or not self._p_keep else self._tail - self._head
            log.warn(_TAG, "counted payload stalled: %d of %d bytes came; dropped", have, self._p_n)
            self._p_hdr = None
            self._p_out = None
            self._head = self._tail = 0

    def _overlong(self):
        buf = self._buf
        for prefix, term, _ in self._counted:
            if buf.startswith(prefix):  # its count is still to come: find it, skip the payload
                self._skip = 2
                self._skip_term = term
                break
        else:
            self._skip = 1
        self._drop("line longer than %d bytes" % len(buf))
        keep = 24  # a header's count and terminator may straddle the cut
        buf[0:keep] = self._mv[len(buf) - keep :]
        self._head = 0
        self._tail = keep

    def _drop(self, why):
        self.stats["discarded"] += 1
        log.warn(_TAG, "discarded %s", why)

    def _parse(self):
        buf = self._buf
        while True:
            head = self._head
            tail = self._tail
            if self._p_hdr is not None:  # a counted payload is arriving (or an empty one is done)
                if not self._payload(head, tail):
                    return
                continue
            if head >= tail:
                self._head = self._tail = 0
                return
            if self._edata is not None:  # our own data may come back first
                if not self._match_echo(head, tail):
                    return
                continue
            if self._skip:
                if not self._skipping(head, tail):
                    return
                continue
            while head < tail and (buf[head] == 13 or buf[head] == 10):
                head += 1
            if head == tail:
                self._head = self._tail = 0
                return
            self._head = head
            nl = buf.find(b"\n", head, tail)
            if self._counted:
                got = self._counted_header(head, tail, nl)
                if got > 0:
                    continue
                if got < 0:
                    return  # the header is still arriving
            if nl < 0:
                if self._data is not None and buf[head] == 62:  # '>' prompt, no line end
                    self._head = head + 1
                    if head + 1 < tail and buf[head + 1] == 32:
                        self._head = head + 2
                    self._send_data()
                    self._prompted = head + 1 == tail  # its space may be in the next read
                return
            end = nl
            while end > head and buf[end - 1] == 13:
                end -= 1
            line = self._copy(head, end)
            self._head = nl + 1
            self._line(line)
            if self._more:  # a final result: what follows belongs to what comes next
                return

    def _skipping(self, head, tail):
        """Discarding an overlong line (to its LF) or an overlong counted header (to its
        count, then the payload by count). False: everything buffered was discarded."""
        buf = self._buf
        nl = buf.find(b"\n", head, tail)
        if self._skip == 2:
            term = self._skip_term
            t = buf.find(term, head, tail if nl < 0 else nl + 1)
            while t >= 0:
                n = self._count_before(head, t, -1)
                if n >= 0:
                    self._skip = 0
                    self._head = t + len(term)
                    self._start_item(b"", n, False)
                    return True
                t = buf.find(term, t + 1, tail if nl < 0 else nl + 1)
            if nl < 0:  # keep the last bytes: the terminator may straddle two reads
                keep = min(tail - head, 24)
                buf[0:keep] = self._mv[tail - keep : tail]
                self._head = 0
                self._tail = keep
                return False
        elif nl < 0:
            self._head = self._tail = 0
            return False
        self._skip = 0
        self._head = nl + 1
        return True

    def _match_echo(self, head, tail):
        """Drop the body we wrote as the module echoes it, byte by byte. False: everything
        buffered was echo (wait for more)."""
        d = self._edata or b""
        pos = self._epos
        if self._prompted:  # the '>' prompt's trailing space, in a read of its own
            self._prompted = False
            if self._buf[head] == 32:  # the module's prompt is "> "
                self._head = head = head + 1
                if head == tail:
                    return False
        if pos == 0:  # first byte: is an echo coming at all?
            first = d[0] if d else 0
            if first == 13 or first == 10:  # could be the reply: go by what the module does
                echoes = self._echoed or self.data_echo
            else:  # a reply starts with CR/LF, an echo with the body's first byte
                echoes = self._buf[head] == first
                self.data_echo = echoes
            if not echoes or not d:
                self._edata = None
                return True
        k = min(len(d) - pos, tail - head)
        if not self._buf.startswith(d[pos : pos + k], head):  # not (or no longer) the echo
            self._edata = None
            return True
        self._head = head + k
        self._epos = pos + k
        if self._epos == len(d):
            self._edata = None
            return True
        return False

    def _count_before(self, head, t, quote):
        """The count that ends at terminator position t: the digits right before it (after
        spaces and CRs), after ',' ':' or ' ' (after '",' when the header's first field is
        quoted, its opening quote at `quote`; -1 when it is not). -1: no count there; a count
        too long to be one is returned as a huge number (and refused by its size)."""
        buf = self._buf
        j = t
        while j > head and (buf[j - 1] == 32 or buf[j - 1] == 13):
            j -= 1
        i = j
        while i > head and 48 <= buf[i - 1] <= 57:
            i -= 1
        if i == j or i == head:
            return -1
        sep = buf[i - 1]
        if sep != 44 and sep != 58 and sep != 32:  # ',' ':' ' '
            return -1
        if quote >= 0 and (sep != 44 or i - 2 <= quote or buf[i - 2] != 34):  # '",'
            return -1
        if j - i > 9:
            return 1 << 30
        n = 0
        for k in range(i, j):
            n = n * 10 + buf[k] - 48
        return n

    def _counted_header(self, head, tail, nl):
        """A counted header at `head`? 1: consumed (parsed, or refused); 0: not a counted
        item here (an ordinary line); -1: not complete yet."""
        buf = self._buf
        for prefix, term, most in self._counted:
            if not buf.startswith(prefix, head):
                continue
            end = tail if nl < 0 else nl + 1
            q = head + len(prefix)
            while q < end and (buf[q] == 58 or buf[q] == 32):  # ':' ' '
                q += 1
            quote = q if q < end and buf[q] == 34 else -1
            t = buf.find(term, q, end)
            n = -1
            while t >= 0:
                n = self._count_before(head, t, quote)
                if n >= 0:
                    break
                t = buf.find(term, t + 1, end)
            if t < 0:
                return 0 if nl >= 0 else -1  # a plain line with this prefix, or incomplete
            self._head = t + len(term)
            if n > most:
                self._drop("a count of %d (at most %d)" % (n, most) if n < 1 << 30 else "a count too long")
                return 1
            j = t
            while buf[j - 1] < 48 or buf[j - 1] > 57:
                j -= 1
            self._start_item(self._copy(head, j), n, True)
            return 1
        return 0

    def _start_item(self, header, n, keep):
        self._p_hdr = header
        self._p_n = n
        self._p_have = 0
        self._p_keep = keep
        self._p_out = None
        self._rx_at = self._read_at = self.ticks()
        self._short = False

    def _payload(self, head, tail):
        """The pending counted item's payload from the buffer. True: done with it."""
        n = self._p_n
        have = tail - head
        if not self._p_keep:  # skipped by count
            k = min(n - self._p_have, have)
            self._p_have += k
            self._head = head + k
            if self._p_have < n:
                return False
            self._p_hdr = None
            self.stats["discarded"] += 1
            return True
        if have >= n:
            self._head = head + n
            self._done_item(self._copy(head, head + n))
            return True
        size = len(self._buf)
        if n <= size - 32:  # it fits: make room at the front and let the bytes come
            if head + n > size:
                self._buf[0:have] = self._mv[head:tail]
                self._head = 0
                self._tail = have
            return False
        try:  # longer than the buffer: it gets a buffer of its own, filled straight
            out = bytearray(n)
        except MemoryError:
            self._p_keep = False
            self.stats["truncated"] += 1
            log.error(_TAG, "no memory for a %d-byte payload: skipped", n)
            return self._payload(head, tail)
        out[0:have] = self._mv[head:tail]
        self._p_out = out
        self._p_have = have
        self._head = self._tail = 0
        return False

    def _done_item(self, payload):
        header = self._p_hdr or b""
        self._p_hdr = None
        if self._active and self._info and header.startswith(self._info):
            self.payload = payload
            self._keep(header)
        else:
            self._urc(header, payload)

    def _send_data(self):
        data = self._data or b""
        self._data = None
        self._edata = data
        self._epos = 0
        self.uart.write(data)

    # ---------------------------------------------------------------- classification
    def _keep(self, line):
        if len(self.lines) < _LINES_MAX:
            self.lines.append(line)
        else:
            self.stats["discarded"] += 1

    def _line(self, line):
        if line[:2] == b"AT":  # an echo: of this command, or a stray one (never shown)
            if self._active and line == self._echo:
                self._echoed = True
            else:
                self.stats["echo"] += 1
                log.debug(_TAG, "stray echo of %s", name(line))
            return
        if self._active:
            if self._data is not None and (line == b"DOWNLOAD" or line[:1] == b">"):
                self._send_data()
                return
            if line == b"OK":
                self.final = line
                self._ok = True
                if not self._then:
                    self._active = False
                    self._more = True
                return
            if _is_final_error(line):
                self._end(line, failed=True)
                return
            if self._then:
                for p in self._then:
                    if line.startswith(p):
                        self._end(line)
                        return
            if self._info and line.startswith(self._info):
                rest = line[len(self._info) :].lstrip()
                if rest[:1] == b":":
                    self._keep(line)
                    return
            if self._urc(line, None):
                for p in self._abort:
                    if line.startswith(p):
                        self._end(line, aborted=True)
                return
            if self._info is None:
                self._keep(line)
                return
        elif self._urc(line, None):
            return
        self.stats["unknown"] += 1
        log.warn(_TAG, "unknown line %s", log.safe(text(line), 60))

    def _end(self, line, failed=False, aborted=False):
        self.final = line
        self._failed = failed
        self._aborted = aborted
        self._active = False
        self._more = not aborted  # after a final, the rest is for the next command

    def _urc(self, line, payload):
        for prefix, handler in self._urcs:
            if line.startswith(prefix):
                self.stats["urc"] += 1
                try:
                    handler(line, payload)
                except Exception as e:  # a handler bug must not kill the receive path
                    log.error(_TAG, "URC handler for %s failed: %s", text(prefix), log.err(e))
                return True
        return False

