# The AT engine: framing, final results, prompts, counted payloads and URC dispatch over
# any UART-like object (read/readinto/write/any). It knows the shape of the Air72x dialect
# (../shared/AT_DIALECT.md), not the meaning of any command: that is air72x.py's job.
#
# How a received line is classified, in this order:
#   counted item  a registered prefix whose payload is read by count (+MSUB ... byte,<n
#                 bytes>, +HTTPREAD: n\r\n<n bytes>), never by lines;
#   echo          the command just sent (echo is on after every module reboot);
#   final         OK / ERROR / +CME ERROR: n, or one of the command's own `then` lines
#                 (CONNECT OK, CONNACK OK, SUBACK, PUBACK, +HTTPACTION...);
#   information   a line starting with the command's `info` prefix ("+CSQ" for AT+CSQ);
#   URC           a line matching the prefix table: dispatched at once, also in the middle
#                 of another command's reply, and never taken as its answer;
#   other         while a command runs: an information line (ATI prints bare text);
#                 otherwise logged as unknown.
from firmware import log
from firmware.port import const, copier, sleep_ms, ticks_add, ticks_diff, ticks_ms

RXBUF = const(1536)  # receive buffer = longest line accepted
_TIMEOUT_MS = const(5000)  # default per-command deadline
_PAYLOAD_MS = const(2000)  # extra time a counted payload may take to arrive
_POLL_READS = const(8)  # poll() returns after at most this many reads
_TAG = "at"


class ModemError(Exception):
    """Base of every error the modem layers raise."""


class ATError(ModemError):
    """The module answered ERROR or +CME ERROR: <code> (code is None for plain ERROR)."""

    def __init__(self, cmd, code=None, line=None, after_ok=False):
        self.cmd = cmd
        self.code = code
        self.line = line
        self.after_ok = after_ok  # OK came first: the later step failed (a refused CONNACK)
        super().__init__("%s failed: %s" % (cmd, line or "ERROR"))


class ATTimeout(ModemError):
    """No final result within the command's deadline."""

    def __init__(self, cmd, ms, stage=""):
        self.cmd = cmd
        self.ms = ms
        super().__init__("%s: no %s within %d ms" % (cmd, stage or "reply", ms))


class ATAbort(ModemError):
    """A URC in `abort` (CLOSED, RDY, ...) arrived while the command waited."""

    def __init__(self, cmd, line):
        self.cmd = cmd
        self.line = line
        super().__init__("%s interrupted by %s" % (cmd, line))


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
        self._skip = False  # discarding the rest of an overlong line
        self._p_hdr = None  # header of a counted item whose payload is still arriving
        self._p_off = 0  # ... where its payload starts, relative to self._head
        self._p_n = 0  # ... and its length
        self._urcs = []  # [(prefix, handler(line, payload))]
        self._counted = []  # [(prefix, terminator)]
        self.idle = None  # called while waiting (feed a watchdog)
        self._until_readable = _waiter(uart)
        self.payload_ms = _PAYLOAD_MS
        self.aborts = ()  # type: tuple  # URC prefixes that end any command's wait (b"RDY")
        self.stats = {"unknown": 0, "discarded": 0, "urc": 0, "timeouts": 0}
        # state of the command in flight
        self._active = False
        self._echo = b""
        self._info = None
        self._then = None
        self._abort = ()
        self._data = None  # body to write at the DOWNLOAD / '>' prompt
        self._echo_data = b""  # that body, in case the module echoes it back
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

    def counted(self, prefix, terminator):
        """Lines starting with `prefix` carry a payload: the count ends the header, which
        ends with `terminator`; then exactly that many raw bytes follow."""
        self._counted.append((prefix, terminator))

    # ---------------------------------------------------------------- commands
    def cmd(self, command, timeout=_TIMEOUT_MS, info=None, then=None, data=None, label=None, abort=None):
        """Send `command` and wait for its final result; return its information lines.

        info:  prefix of its information lines (b"+CSQ"), so a URC of another kind is
               never taken for one.
        then:  tuple of line prefixes that end the command after OK (b"CONNECT OK", ...);
               the matching line is left in self.final.
        data:  bytes written at the DOWNLOAD or '>' prompt.
        label: how the command is named in errors and logs (hides credentials).
        abort: URC prefixes that end the wait with ATAbort (default self.aborts).
        """
        if self._active:
            raise ModemError("%s sent while %s is in flight" % (label or command, self._echo))
        self.poll()  # whatever was already waiting is not this command's answer
        cmd = command.encode() if isinstance(command, str) else command
        label = label or command
        self._echo = cmd
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
            deadline = ticks_add(ticks_ms(), timeout)
            while self._active:
                if not self._fill() and self._active:
                    if ticks_diff(deadline, ticks_ms()) <= 0:
                        self.stats["timeouts"] += 1
                        raise ATTimeout(label, timeout, self._stage())
                    self._wait()
        finally:
            self._active = False
            self._data = None
            self._echo_data = b""
        if self._aborted:
            raise ATAbort(label, self.final.decode())
        if self._failed:
            raise ATError(label, _cme_code(self.final), self.final.decode(), self._ok)
        return self.lines

    def _stage(self):
        if self._data is not None:
            return "prompt"
        if self._then and self.final == b"OK":
            return b" or ".join(self._then).decode()
        return "final result"

    def poll(self):
        """Process pending input (URCs, downlinks); return at once when there is none."""
        for _ in range(_POLL_READS):
            if not self._fill():
                break

    def _wait(self):
        """Nothing to read: feed the watchdog, then sleep until input arrives (1 ms at most)."""
        if self.idle:
            self.idle()
        if self._until_readable:
            self._until_readable(1)
        else:
            sleep_ms(1)

    # ---------------------------------------------------------------- receive path
    def _fill(self):
        """Read what the UART has into the buffer and parse it. False if nothing came."""
        buf = self._buf
        if self._tail == len(buf):
            if self._head:
                n = self._tail - self._head
                buf[0:n] = self._mv[self._head : self._tail]
                self._head = 0
                self._tail = n
            else:  # a full buffer without a line end: garbage or an overlong line
                self._discard("line longer than %d bytes" % len(buf), bytes(self._mv[:40]))
                self._skip = True
        # an empty buffer reads into the whole view: an idle poll allocates nothing, and a
        # reply that arrives in one piece needs no slice object for its read
        n = self.uart.readinto(self._mv[self._tail :] if self._tail else self._mv)
        if not n:
            return False
        self._tail += n
        self._parse()
        return True

    def _discard(self, why, sample):
        self.stats["discarded"] += 1
        log.warn(_TAG, "discarded %s: %r...", why, sample)
        self._head = self._tail = 0
        self._p_hdr = None

    def _parse(self):
        buf = self._buf
        while True:
            head = self._head
            tail = self._tail
            if self._p_hdr is not None:  # a counted payload is arriving: nothing else to do
                if self._counted_item(head, tail, -1) < 0:
                    return
                continue
            if self._skip:
                nl = buf.find(b"\n", head, tail)
                if nl < 0:
                    self._head = self._tail = 0
                    return
                head = nl + 1
                self._skip = False
            if self._echo_data:  # before CR/LF: a real reply starts with them
                if not self._skip_echo_data(head, tail):
                    return
                head = self._head
            while head < tail and (buf[head] == 13 or buf[head] == 10):
                head += 1
            if head == tail:
                self._head = self._tail = 0
                return
            self._head = head
            nl = buf.find(b"\n", head, tail)
            if self._counted:
                got = self._counted_item(head, tail, nl)
                if got > 0:
                    continue
                if got < 0:
                    return  # the payload is still arriving
            if nl < 0:
                if self._data is not None and buf[head] == 62:  # '>' prompt, no line end
                    self._head = tail
                    self._send_data()
                return
            end = nl
            while end > head and buf[end - 1] == 13:
                end -= 1
            line = self._copy(head, end)
            self._head = nl + 1
            self._line(line)

    def _skip_echo_data(self, head, tail):
        """Drop the body we wrote if the module echoes it. False: wait for more bytes."""
        if head == tail:
            return False
        d = self._echo_data
        k = min(len(d), tail - head)
        if self._buf.startswith(d[:k], head):
            if k < len(d):
                return False
            self._head = head + k
        self._echo_data = b""
        return True

    def _counted_item(self, head, tail, nl):
        """Read a counted item at `head` if one starts there.
        1: consumed; 0: no counted item here; -1: its payload is still arriving."""
        if self._p_hdr is None:
            found = self._counted_header(head, tail, nl)
            if found <= 0:
                return -found  # 0: none here; a bad one was discarded: consumed
        start = head + self._p_off
        n = self._p_n
        have = tail - start
        if have >= n:
            payload = self._copy(start, start + n)
            self._head = start + n
        elif self._p_off + n <= len(self._buf):
            # it fits the buffer and is on its way: take the rest straight in (no parse per
            # chunk); if it stalls past payload_ms, keep waiting without blocking
            if start + n > len(self._buf):  # make room: the item moves to the front
                k = tail - head
                self._buf[0:k] = self._mv[head:tail]
                self._head = 0
                self._tail = k
                start = self._p_off
            if not self._fill_until(start + n):
                return -1
            payload = self._copy(start, start + n)
            self._head = start + n
        else:
            payload = self._read_rest(start, have, n)
        header = self._p_hdr
        self._p_hdr = None
        if payload is not None:
            self._item(header, payload)
        return 1

    def _counted_header(self, head, tail, nl):
        """Parse a counted header at `head` into self._p_*: 1 done, 0 none here (or not
        complete yet), -1 a bad one was discarded."""
        buf = self._buf
        for prefix, term in self._counted:
            if not buf.startswith(prefix, head):
                continue
            t = buf.find(term, head, tail)
            if t < 0 or 0 <= nl < t:
                return 0  # incomplete, or a plain line with this prefix
            # the count is the number just before the terminator (and a "byte" word)
            j = t
            while j > head and (buf[j - 1] == 32 or buf[j - 1] == 13):
                j -= 1
            if j - 4 > head and buf.startswith(b"byte", j - 4):
                j -= 4
                while j > head and buf[j - 1] == 32:
                    j -= 1
            i = j
            while i > head and 48 <= buf[i - 1] <= 57:
                i -= 1
            if i == j or j - i > 9 or buf[i - 1] not in (32, 44, 58):  # ' ' ',' ':'
                self._discard("bad count in %r" % bytes(self._mv[head:t]), b"")
                return -1
            n = 0
            for k in range(i, j):
                n = n * 10 + buf[k] - 48
            self._p_hdr = self._copy(head, j)
            self._p_off = t + len(term) - head
            self._p_n = n
            return 1
        return 0

    def _fill_until(self, end):
        """Read into the buffer until it holds `end` bytes; False after payload_ms."""
        deadline = ticks_add(ticks_ms(), self.payload_ms)
        while self._tail < end:
            got = self.uart.readinto(self._mv[self._tail :])
            if got:
                self._tail += got
            elif ticks_diff(deadline, ticks_ms()) <= 0:
                return False
            else:
                self._wait()
        return True

    def _read_rest(self, start, have, n):
        """The payload runs past what is buffered: read the rest straight from the UART."""
        out = bytearray(n)
        mv = memoryview(out)
        mv[:have] = self._mv[start : start + have]
        self._head = self._tail = 0
        deadline = ticks_add(ticks_ms(), self.payload_ms + n)
        while have < n:
            got = self.uart.readinto(mv[have:])
            if got:
                have += got
                continue
            if ticks_diff(deadline, ticks_ms()) <= 0:
                self.stats["discarded"] += 1
                log.error(_TAG, "counted payload truncated: %d of %d bytes came; dropped", have, n)
                return None
            self._wait()
        return bytes(out)

    def _send_data(self):
        data = self._data or b""
        self._data = None
        self._echo_data = data
        self.uart.write(data)

    # ---------------------------------------------------------------- classification
    def _item(self, header, payload):
        if self._active and self._info and header.startswith(self._info):
            self.payload = payload
            self.lines.append(header)
        else:
            self._urc(header, payload)

    def _line(self, line):
        if self._active:
            if line == self._echo:
                return
            if self._data is not None and (line == b"DOWNLOAD" or line[:1] == b">"):
                self._send_data()
                return
            if line == b"OK":
                self.final = line
                self._ok = True
                if not self._then:
                    self._active = False
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
                    self.lines.append(line)
                    return
            if self._urc(line, None):
                for p in self._abort:
                    if line.startswith(p):
                        self._end(line, aborted=True)
                return
            self.lines.append(line)
            return
        if not self._urc(line, None):
            self.stats["unknown"] += 1
            log.warn(_TAG, "unknown line %r", line[:80])

    def _end(self, line, failed=False, aborted=False):
        self.final = line
        self._failed = failed
        self._aborted = aborted
        self._active = False

    def _urc(self, line, payload):
        for prefix, handler in self._urcs:
            if line.startswith(prefix):
                self.stats["urc"] += 1
                try:
                    handler(line, payload)
                except Exception as e:  # a handler bug must not kill the receive path
                    log.error(_TAG, "URC handler for %r failed: %r", prefix, e)
                return True
        return False
