"""A virtual Air724UG on a TCP port: the UART side of the module, for end-to-end tests.

Owns: the AT dialect of /work/shared/AT_DIALECT.md as the module speaks it (autobaud, echo,
`\\r\\n<line>\\r\\n` framing, `+CME ERROR: n`), the bearer (SAPBR), the HTTP client
(HTTPINIT/PARA/DATA/ACTION/READ/TERM, a real HTTP request), and a real MQTT 3.1.1 client
(MCONFIG/MIPSTART/SSLMIPSTART/MCONNECT/MSUB/MUNSUB/MPUB/MPUBEX/+MSUB downlinks), plus fault
injection (CLOSED, PDP loss, reboot, garbage, dropped bytes, muted commands, slow replies,
SIM removal).

Plays DNS: every host ending in `aliyuncs.com` goes to the local cloud (auth_url for HTTP,
mqtt_addr for MIPSTART, mqtts_addr for SSLMIPSTART, TLS without verification); 127.0.0.1 and
localhost are reached directly; anything else is a DNS failure.

Design: one "module CPU" thread owns all module state. It takes command lines from the UART
input buffer and events (broker packets, connect/HTTP results, timers, injected faults) from a
time-ordered queue, so replies and URCs never interleave and runs are deterministic. Socket
I/O (host UART, broker link, HTTP) happens in helper threads that only post events.

Where the dialect doc is silent (marked "(inferred)" in the code):
- MIPSTART always answers OK first, then one of CONNECT OK / ALREADY CONNECT /
  `STATE: <s>` + CONNECT FAIL (s: IP INITIAL no bearer, PDP DEACT after a PDP loss,
  TCP CLOSED refused or unknown host); a second MIPSTART while connecting: +CME ERROR: 3.
- MQTT commands need the bearer (SAPBR=1,1) like HTTP does (mqtt_needs_bearer=True).
- A refused CONNACK: OK, ERROR, and the link is closed without a CLOSED line.
- PDP loss / SIM removal with a link up: the URC, then CLOSED.
- Cached downlinks: `+MSUB: <slot>` with slot 0..3; AT+MQTTMSGGET prints the kept messages
  oldest first as `+MSUB: <topic>,<len> byte,<payload>` (topic unquoted) and empties the cache.
- MDISCONNECT sends DISCONNECT and closes the socket; MIPCLOSE afterwards still answers OK.
- The LF of a CRLF command ending is swallowed, not echoed; mute() swallows the echo too.

The MQTT client is written here (not paho) because the module opens the TCP/TLS link
(MIPSTART) and sends CONNECT (MCONNECT) as two separate steps, and must never reconnect or
retransmit on its own.

    vm = VirtualModule(auth_url="http://127.0.0.1:P", mqtt_addr=("127.0.0.1", p1))
    vm.start(); ser = serial.serial_for_url(vm.url); ...; vm.stop()

CLI: python tools/vmodule.py --auth-url http://127.0.0.1:P --mqtt 127.0.0.1:P --mqtts 127.0.0.1:P
"""
import heapq
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_VERSION = "AirM2M_Air724UG_V409_LTE_AT"
MPUB_MAX = 2384          # largest decoded AT+MPUB message on Air724 firmware
MCONFIG_MAX = 256        # clientid / user / password, each
URL_MAX = 500
LINE_MAX = 16384         # command line buffer (inferred; an escaped 2384-byte MPUB fits)
CME_NOT_ALLOWED = 3
CME_NO_SIM = 10
CME_FAILED = 767
FAULT_KINDS = ("closed", "pdp_loss", "reboot", "garbage", "drop_bytes", "mute", "slow",
               "sim_removed", "sim_inserted", "power_cycle")


# ---------------------------------------------------------------------------------------
# Parameters: one home for the quoting and escape rules
# ---------------------------------------------------------------------------------------
class ParamError(ValueError):
    """A malformed parameter list: the module answers a bare ERROR."""


def parse_params(text):
    """Split the text after `=` into [(value, quoted)].

    A quoted string runs to the next `"` (the module has no backslash-quote; a `"` is
    written `\\22`), so it may hold `,` `|` `=`. Spaces around items are ignored
    (`AT+MSUB="t", 0` works). Values are str holding one char per byte (latin-1).
    """
    out = []
    i, n = 0, len(text)
    if not text.strip():
        return out
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise ParamError("unterminated string")
            out.append((text[i + 1:j], True))
            i = j + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                raise ParamError("text after a closing quote")
        else:
            j = text.find(",", i)
            if j < 0:
                j = n
            value = text[i:j].strip()
            if '"' in value:
                raise ParamError("stray quote")
            out.append((value, False))
            i = j
        if i >= n:
            return out
        i += 1  # the comma


_ESCAPES = {"22": '"', "0D": "\r", "0A": "\n", "5C": "\\"}


def decode_escapes(s):
    """`\\22` -> `"`, `\\0D` -> CR, `\\0A` -> LF, `\\5C` -> `\\` (hex in either case); any
    other backslash stays as it is."""
    if "\\" not in s:
        return s
    out = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and s[i + 1:i + 3].upper() in _ESCAPES:
            out.append(_ESCAPES[s[i + 1:i + 3].upper()])
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode_escapes(data):
    """The inverse, for tests and tools: bytes/str -> the text to put inside MPUB's quotes."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("latin-1")
    return (data.replace("\\", "\\5C").replace('"', "\\22")
            .replace("\r", "\\0D").replace("\n", "\\0A"))


def _int(p, lo=None, hi=None):
    value, _quoted = p  # the module takes `"1884"` as well as `1884` (inferred, seen in examples)
    if not re.fullmatch(r"\d{1,9}", value):
        raise ParamError("not a number")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ParamError("out of range")
    return v


def _b(s):
    return s.encode("latin-1")


def _lines(*lines):
    """Each line wrapped `\\r\\n<line>\\r\\n`."""
    return b"".join(b"\r\n" + (_b(x) if isinstance(x, str) else x) + b"\r\n" for x in lines)


OK = _lines("OK")
ERROR = _lines("ERROR")


def cme(n):
    return _lines("+CME ERROR: %d" % n)


# ---------------------------------------------------------------------------------------
# MQTT 3.1.1 wire format (client side)
# ---------------------------------------------------------------------------------------
def _mstr(b):
    return struct.pack("!H", len(b)) + b


def _mpacket(first, body):
    n = len(body)
    head = bytearray([first])
    while True:
        d = n % 128
        n //= 128
        head.append(d | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


def _take_packet(buf):
    """Pop one complete packet (first_byte, body) from a bytearray, or None."""
    if len(buf) < 2:
        return None
    mult, length, i = 1, 0, 1
    while True:
        if i >= len(buf):
            return None
        d = buf[i]
        length += (d & 0x7F) * mult
        mult *= 128
        i += 1
        if not d & 0x80:
            break
        if i > 4:
            raise ValueError("bad remaining length")
    if len(buf) < i + length:
        return None
    first, body = buf[0], bytes(buf[i:i + length])
    del buf[:i + length]
    return first, body


class _Link:
    """The module's one TCP/TLS link to a broker and the MQTT session on it."""

    _ids = 0

    def __init__(self, sock, tls):
        _Link._ids += 1
        self.id = _Link._ids
        self.sock = sock
        self.tls = tls
        self.io = threading.Lock()      # one SSL object: reads and writes never overlap
        self.alive = True
        self.connect_sent = False       # MCONNECT issued, CONNACK not yet reported
        self.connack_in = False         # CONNACK received, its URC not yet printed
        self.peer_closed = False        # the server closed while that URC was pending
        self.mqtt = False               # CONNACK OK received
        self.keepalive = 0
        self.last_tx = time.monotonic()
        self.ping_sent = None
        self.next_pid = 0
        self.subs = {}                  # pid -> "SUBACK" / "UNSUBACK"
        self.qos1_pid = None            # the QoS 1 publish awaiting PUBACK
        self.qos2_in = set()

    def pid(self):
        self.next_pid = self.next_pid % 65535 + 1
        return self.next_pid

    def send(self, data):
        with self.io:
            self.sock.sendall(data)
        self.last_tx = time.monotonic()

    def close(self):
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------
class VirtualModule:
    """An emulated Air724UG reachable at `self.url` (socket://127.0.0.1:PORT)."""

    def __init__(self, auth_url=None, mqtt_addr=None, mqtts_addr=None, baud=0, port=0,
                 version=DEFAULT_VERSION, sim=True, attach_after=0, imei="866714043075174",
                 iccid="89860425102180123456", csq=(20, 99), seed=724,
                 reply_delay=0.0, connect_delay=0.0, connack_delay=0.0, suback_delay=0.0,
                 puback_delay=0.0, http_delay=0.0, bearer_delay=0.0,
                 idle_close=5.0, connack_timeout=10.0, connect_timeout=10.0,
                 http_timeout=20.0, data_timeout=10.0, ping_interval=None,
                 mpubex=True, mpubex_max=10240, mpubex_echo=False,
                 msgget_quote_topic=False, mqtt_needs_bearer=True):
        """
        baud: emulated UART speed, bytes paced at baud/10 per second both ways (0: unpaced).
        attach_after: int = CGATT? answers 0 that many polls; float = seconds after boot.
        idle_close: seconds between CONNECT OK and MCONNECT after which the server drops the
            socket and the module prints CLOSED (None/0: never).
        ping_interval: override the PINGREQ period (default: the MCONNECT keepalive), so that
            a test can see pings without waiting 30 s.
        mpubex_echo: echo MPUBEX data (some firmware did so, even after ATE0).
        msgget_quote_topic: AT+MQTTMSGGET prints the topic quoted (default unquoted).
        """
        self.auth_url = auth_url.rstrip("/") if auth_url else None
        self.mqtt_addr = tuple(mqtt_addr) if mqtt_addr else None
        self.mqtts_addr = tuple(mqtts_addr) if mqtts_addr else None
        self.baud = baud
        self.bind_port = port
        m = re.fullmatch(r"V?(\d+)", str(version))
        self.version = "AirM2M_Air724UG_V%s_LTE_AT" % m.group(1) if m else str(version)
        self.sim_present = bool(sim)
        self.attach_after = attach_after
        self.imei = imei
        self.iccid = iccid
        self.csq = csq
        self.seed = seed                     # one stream per purpose: a bearer opened or not
        self._ip_rng = random.Random("%s:ip" % seed)        # does not change the garbage
        self._garbage_rng = random.Random("%s:garbage" % seed)
        self.reply_delay = reply_delay
        self.connect_delay = connect_delay
        self.connack_delay = connack_delay
        self.suback_delay = suback_delay
        self.puback_delay = puback_delay
        self.http_delay = http_delay
        self.bearer_delay = bearer_delay
        self.idle_close = idle_close
        self.connack_timeout = connack_timeout
        self.connect_timeout = connect_timeout
        self.http_timeout = http_timeout
        self.data_timeout = data_timeout
        self.ping_interval = ping_interval
        self.mpubex = mpubex
        self.mpubex_max = mpubex_max
        self.mpubex_echo = mpubex_echo
        self.msgget_quote_topic = msgget_quote_topic
        self.mqtt_needs_bearer = mqtt_needs_bearer

        # public records
        self.log = []               # (direction "rx"/"tx", bytes), in order
        self.commands = []          # AT command strings received (without CR), in order
        self.faults_injected = {}   # kind -> count
        self.stats = {"pingreq": 0, "pingresp": 0, "published": 0, "downlinks": 0}
        self.connack_code = None    # return code of the last CONNACK (None: none yet)
        self.port = None

        # plumbing
        self._cv = threading.Condition()     # guards _inbuf, _events, _abort, _stopping
        self._inbuf = bytearray()
        self._events = []                    # heap of (due, seq, fn)
        self._seq = 0
        self._abort = False
        self._stopping = False
        self._wlock = threading.Lock()
        self._conn = None
        self._lsock = None
        self._threads = []
        self._worker_thread = None
        self._tx_clock = 0.0
        self._rx_clock = 0.0
        self._drop = 0
        self._mute = []                      # list of execute flags, one per muted command
        self._slow = 0.0
        self._triggers = []                  # [prefix, nth, fault method, args, kwargs]
        self._power_on(trained=False)

    # ----- lifecycle ------------------------------------------------------------------
    def start(self):
        """Listen on 127.0.0.1 (a free port unless port= was given); returns at once."""
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", self.bind_port))
        self._lsock.listen(2)
        self.port = self._lsock.getsockname()[1]
        self._spawn(self._accept_loop, "vmodule-accept")
        self._worker_thread = self._spawn(self._worker, "vmodule-cpu")
        return self

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def stop(self):
        with self._cv:
            self._stopping = True
            self._abort = True
            self._cv.notify_all()
        if self._lsock:
            try:
                self._lsock.close()
            except OSError:
                pass
        conn, self._conn = self._conn, None
        if conn:
            _close_sock(conn)
        if self._link:
            self._link.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=3)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, fn, name, *args):
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return t

    # ----- module state ---------------------------------------------------------------
    def _power_on(self, trained):
        """Everything a restart forgets."""
        self.trained = trained
        self.echo = True
        self.boot_time = time.monotonic()
        self._attach_polls = self.attach_after if isinstance(self.attach_after, int) else 0
        self._attach_at = (self.boot_time + self.attach_after
                           if isinstance(self.attach_after, float) else 0.0)
        self._detached = False          # AT+CGATT=0
        self.bearer_open = False
        self.bearer_ip = None
        self._bearer_pending = False
        self._pdp_lost = False
        self._http = None               # dict while HTTPINIT is active
        self._mconfig = None            # (clientid, user, password, will)
        self._link = getattr(self, "_link", None)
        if self._link:
            self._link.close()
        self._link = None
        self._connecting = None         # token of the MIPSTART in progress
        self._mip_open = False          # the host has a link to MIPCLOSE
        self.msg_mode = 1               # AT+MQTTMSGSET: 1 cached (power-up default), 0 push
        self._cache = [None] * 4
        self._cache_next = 0
        self._cache_order = []

    @property
    def attached(self):
        if not self.sim_present or self._detached:
            return False
        return self._attach_polls <= 0 and time.monotonic() >= self._attach_at

    @property
    def mqtt_state(self):
        """What AT+MQTTSTATU reports: 0 offline, 1 connected, 2 TCP up without MQTT."""
        link = self._link
        if link is None or not link.alive:
            return 0
        return 1 if link.mqtt else 2

    # ----- the host side of the UART --------------------------------------------------
    def _accept_loop(self):
        self._lsock.settimeout(0.2)     # close() does not wake accept() on Linux
        while not self._stopping:
            try:
                conn, _ = self._lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old, self._conn = self._conn, conn   # one host at a time: the newest wins
            if old:
                _close_sock(old)
            self._spawn(self._host_reader, "vmodule-uart-rx", conn)

    def _host_reader(self, conn):
        while not self._stopping:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            if self.baud:
                self._pace_rx(data)
            self.log.append(("rx", data))
            with self._cv:
                self._inbuf += data
                self._cv.notify_all()
        if self._conn is conn:
            self._conn = None
        _close_sock(conn)

    def _pace_rx(self, data):
        bps = self.baud / 10.0
        now = time.monotonic()
        self._rx_clock = max(now, self._rx_clock) + len(data) / bps
        delay = self._rx_clock - now
        if delay > 0:
            time.sleep(delay)

    def _emit(self, data):
        """Bytes onto the module's TX line (the only writer is the module CPU thread, but
        the lock keeps it safe for anyone)."""
        if not data:
            return
        with self._wlock:
            self.log.append(("tx", data))
            if self._drop:
                cut = min(self._drop, len(data))
                self._drop -= cut
                data = data[cut:]
                if not data:
                    return
            conn = self._conn
            if conn is None:
                return          # nobody on the UART: the bytes are lost
            try:
                if not self.baud:
                    conn.sendall(data)
                    return
                bps = self.baud / 10.0
                step = max(1, int(bps * 0.005))
                for off in range(0, len(data), step):
                    piece = data[off:off + step]
                    now = time.monotonic()
                    self._tx_clock = max(now, self._tx_clock) + len(piece) / bps
                    if self._tx_clock > now:
                        time.sleep(self._tx_clock - now)
                    conn.sendall(piece)
            except OSError:
                pass

    # ----- the module CPU -------------------------------------------------------------
    def _post(self, fn, delay=0.0):
        with self._cv:
            self._seq += 1
            heapq.heappush(self._events, (time.monotonic() + delay, self._seq, fn))
            self._cv.notify_all()

    def _call(self, fn, timeout=10.0):
        """Run fn on the module CPU thread and wait for it (fault methods)."""
        if threading.current_thread() is self._worker_thread or self._worker_thread is None:
            return fn()
        if self._stopping:
            return None
        done = threading.Event()
        box = []

        def run():
            try:
                box.append(fn())
            finally:
                done.set()
        self._post(run)
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if self._stopping or time.monotonic() > deadline:
                break
        return box[0] if box else None

    def _worker(self):
        while True:
            ev = line = None
            with self._cv:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._events and self._events[0][0] <= now:
                        ev = heapq.heappop(self._events)[2]
                        break
                    line = self._take_line()
                    if line is not None:
                        break
                    wait = self._events[0][0] - now if self._events else None
                    self._cv.wait(wait)
            try:
                if ev is not None:
                    ev()
                else:
                    self._on_line(line)
            except Exception as e:  # noqa: BLE001 - a bug must not kill the module silently
                sys.stderr.write("vmodule: internal error: %r\n" % (e,))
                import traceback
                traceback.print_exc()

    def _take_line(self):
        """Under _cv: the next command line (bytes up to and including CR), or None."""
        buf = self._inbuf
        if not self.trained:
            i = buf.find(b"AT\r")          # only upper-case AT + CR trains the autobaud
            if i < 0:
                if len(buf) > 2:
                    del buf[:-2]
                return None
            del buf[:i]
            self.trained = True
        j = buf.find(b"\r")
        if j < 0:
            if len(buf) > LINE_MAX:
                del buf[:]                  # an endless line overflows the buffer: lost
            return None
        line = bytes(buf[:j + 1])
        del buf[:j + 1]
        return line.lstrip(b"\n")           # the LF of a CRLF ending: swallowed, not echoed

    def _read_raw(self, n, timeout):
        """Data mode: exactly n bytes from the UART within timeout, else None (and the
        partial data is discarded)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self._inbuf) < n:
                rem = deadline - time.monotonic()
                if self._abort or self._stopping or rem <= 0:
                    if not self._abort:
                        self._inbuf.clear()
                    return None
                self._cv.wait(rem)
            data = bytes(self._inbuf[:n])
            del self._inbuf[:n]
            return data

    def _sleep(self, seconds):
        """Sleep on the CPU thread; a reboot/stop cuts it short (returns False)."""
        if seconds <= 0:
            return not self._abort
        deadline = time.monotonic() + seconds
        with self._cv:
            while not (self._abort or self._stopping):
                rem = deadline - time.monotonic()
                if rem <= 0:
                    return True
                self._cv.wait(rem)
        return False

    def _reply_pause(self):
        return self._sleep(self.reply_delay + self._slow)

    def _on_line(self, raw):
        text = raw[:-1].decode("latin-1") if raw.endswith(b"\r") else raw.decode("latin-1")
        i = text.upper().find("AT")
        muted = bool(self._mute) and i >= 0
        execute = self._mute.pop(0) if muted else True
        if self.echo and not muted:
            self._emit(raw)
        if i < 0:
            return          # not a command (an empty line, noise): ignored
        cmd = text[i:]
        self.commands.append(cmd)
        if not muted:
            self._dispatch(cmd)
        elif execute:
            self._emit = lambda data: None      # shadow the method: it runs, says nothing
            try:
                self._dispatch(cmd)
            finally:
                del self._emit
        self._check_triggers(cmd)

    def _dispatch(self, cmd):
        self._after = []
        try:
            reply = self._execute(cmd[2:])
        except ParamError:
            reply = ERROR
        if reply is None:       # aborted by a reboot
            return
        if not self._reply_pause():
            return
        self._emit(reply)
        for fn in self._after:
            fn()

    def _execute(self, body):
        up = body.upper()
        if up == "":
            return OK
        if up in ("E0", "E1", "E"):
            self.echo = up == "E1"
            return OK
        if up in ("I", "I0"):
            return _lines(self.version) + OK
        if up in ("Z", "&F", "&W", "V1", "Q0"):
            return OK
        m = re.match(r"\+[A-Z0-9_]+", up)
        if not m:
            return ERROR
        name, rest = m.group(0), body[m.end():]
        if rest == "":
            kind, args = "exec", None
        elif rest == "?":
            kind, args = "read", None
        elif rest == "=?":
            kind, args = "test", None
        elif rest.startswith("="):
            kind, args = "set", rest[1:]
        else:
            return ERROR
        handler = getattr(self, "_cmd_" + name[1:], None)
        if name == "+MPUBEX" and not self.mpubex:
            handler = None
        if handler is None:
            return ERROR
        if kind == "test":
            return OK
        return handler(kind, args)

    # ----- basic commands -------------------------------------------------------------
    def _cmd_CGMR(self, kind, args):
        return _lines('+CGMR: "%s"' % self.version) + OK if kind == "exec" else ERROR

    def _cmd_CMEE(self, kind, args):
        return _lines("+CMEE: 1") + OK if kind == "read" else OK

    def _cmd_IPR(self, kind, args):
        return _lines("+IPR: 0") + OK if kind == "read" else OK

    def _cmd_CFUN(self, kind, args):
        if kind == "read":
            return _lines("+CFUN: 1") + OK
        if kind == "set":
            p = parse_params(args)
            if len(p) == 2 and _int(p[1]) == 1:     # AT+CFUN=1,1: restart
                self._after.append(lambda: self._do_reboot(count=False))
            return OK
        return ERROR

    def _cmd_RESET(self, kind, args):
        self._after.append(lambda: self._do_reboot(count=False))
        return OK

    def _cmd_CPIN(self, kind, args):
        if kind != "read":
            return ERROR
        return _lines("+CPIN: READY") + OK if self.sim_present else cme(CME_NO_SIM)

    def _cmd_CSQ(self, kind, args):
        if kind != "exec":
            return ERROR
        rssi, ber = self.csq if self.sim_present else (99, 99)
        return _lines("+CSQ: %d,%d" % (rssi, ber)) + OK

    def _reg(self, name, kind):
        if kind == "read":
            stat = 1 if self.attached else (2 if self.sim_present else 0)
            return _lines("+%s: 0,%d" % (name, stat)) + OK
        return OK if kind == "set" else ERROR

    def _cmd_CREG(self, kind, args):
        return self._reg("CREG", kind)

    def _cmd_CEREG(self, kind, args):
        return self._reg("CEREG", kind)

    def _cmd_CGREG(self, kind, args):
        return self._reg("CGREG", kind)

    def _cmd_CGATT(self, kind, args):
        if kind == "read":
            if self._attach_polls > 0:
                self._attach_polls -= 1
                return _lines("+CGATT: 0") + OK
            return _lines("+CGATT: %d" % (1 if self.attached else 0)) + OK
        if kind == "set":
            p = parse_params(args)
            if len(p) != 1:
                raise ParamError("one value")
            v = _int(p[0], 0, 1)
            if not self.sim_present:
                return cme(CME_NO_SIM)
            if v == 1:
                self._detached = False
                self._attach_polls = 0
                self._attach_at = 0.0
                self._pdp_lost = False
            else:
                self._detached = True
                self._lose_network(urc=None)
            return OK
        return ERROR

    def _cmd_CGSN(self, kind, args):
        return _lines(self.imei) + OK if kind == "exec" else ERROR

    def _cmd_GSN(self, kind, args):
        return self._cmd_CGSN(kind, args)

    def _cmd_ICCID(self, kind, args):
        if kind not in ("exec", "read"):
            return ERROR
        return _lines("+ICCID: " + self.iccid) + OK if self.sim_present else cme(CME_NO_SIM)

    def _cmd_CCID(self, kind, args):
        if kind not in ("exec", "read"):
            return ERROR
        return _lines(self.iccid) + OK if self.sim_present else cme(CME_NO_SIM)

    # ----- bearer ---------------------------------------------------------------------
    def _cmd_SAPBR(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) < 2:
            raise ParamError("SAPBR needs cmd,cid")
        cmd, cid = _int(p[0], 0, 4), _int(p[1], 1, 1)
        del cid
        if cmd == 3:
            if len(p) != 4 or p[2][0].upper() not in ("CONTYPE", "APN", "USER", "PWD"):
                raise ParamError("SAPBR=3 needs a parameter and a value")
            return OK
        if len(p) != 2:
            raise ParamError("too many parameters")
        if cmd == 4:
            return _lines("+SAPBR:", "CONTYPE: GPRS") + OK
        if cmd == 2:
            if self.bearer_open:
                return _lines('+SAPBR: 1,1,"%s"' % self.bearer_ip) + OK
            return _lines('+SAPBR: 1,3,"0.0.0.0"') + OK
        if cmd == 1:
            if self.bearer_open or self._bearer_pending:
                return cme(CME_NOT_ALLOWED)
            if not self.sim_present:
                return cme(CME_NO_SIM)
            if not self.attached:
                return cme(CME_FAILED)
            if self.bearer_delay and not self._sleep(self.bearer_delay):
                return None
            self.bearer_open = True
            self._pdp_lost = False
            r = self._ip_rng
            self.bearer_ip = "10.%d.%d.%d" % (r.randint(0, 255), r.randint(0, 255),
                                              r.randint(1, 254))
            return OK
        if cmd == 0:
            if not self.bearer_open:
                return cme(CME_NOT_ALLOWED)
            self.bearer_open = False
            self.bearer_ip = None
            return OK
        raise ParamError("unknown SAPBR cmd")

    # ----- HTTP -----------------------------------------------------------------------
    def _cmd_HTTPINIT(self, kind, args):
        if kind != "exec":
            return ERROR
        if self._http is not None:
            return cme(CME_NOT_ALLOWED)
        self._http = {"url": None, "headers": [], "data": b"", "busy": False, "token": None,
                      "status": None, "body": None}
        return OK

    def _cmd_HTTPTERM(self, kind, args):
        if kind != "exec" or self._http is None:
            return ERROR
        self._http = None
        return OK

    def _cmd_HTTPPARA(self, kind, args):
        if kind != "set" or self._http is None:
            return ERROR
        p = parse_params(args)
        if len(p) != 2:
            raise ParamError("HTTPPARA needs tag,value")
        tag, value = p[0][0].upper(), decode_escapes(p[1][0])
        if tag == "URL":
            if len(value) > URL_MAX or not value:
                return ERROR
            self._http["url"] = value
        elif tag == "USER_DEFINED":
            for h in value.split("\r\n"):
                if h:
                    self._http["headers"].append(h)
        elif tag == "CONTENT":
            self._http["headers"].append("Content-Type: " + value)
        elif tag == "UA":
            self._http["headers"].append("User-Agent: " + value)
        elif tag not in ("CID", "TIMEOUT", "REDIR", "BREAK", "BREAKEND", "PROIP", "PROPORT"):
            return ERROR
        return OK

    def _cmd_HTTPDATA(self, kind, args):
        if kind != "set" or self._http is None:
            return ERROR
        p = parse_params(args)
        if len(p) != 2:
            raise ParamError("HTTPDATA needs len,ms")
        n, ms = _int(p[0], 0, 319488), _int(p[1], 1000, 120000)
        if not self._reply_pause():
            return None
        self._emit(_lines("DOWNLOAD"))
        data = self._read_raw(n, ms / 1000.0)
        if data is None:
            return None if self._abort else ERROR
        self._http["data"] = data
        return OK

    def _cmd_HTTPACTION(self, kind, args):
        if kind != "set" or self._http is None:
            return ERROR
        p = parse_params(args)
        if len(p) != 1:
            raise ParamError("HTTPACTION needs a method")
        method = _int(p[0], 0, 2)
        http = self._http
        if not http["url"]:
            return ERROR
        if http["busy"]:
            self._after.append(lambda: self._emit(_lines("+HTTPACTION: %d,604,0" % method)))
            return OK
        http["busy"] = True
        http["status"] = http["body"] = None
        token = object()
        http["token"] = token
        if not self.bearer_open:
            self._after.append(lambda: self._http_done(http, token, method, 601, b""))
            return OK
        req = (method, http["url"], list(http["headers"]), http["data"])
        start = time.monotonic()
        self._after.append(lambda: self._spawn(self._http_thread, "vmodule-http",
                                               http, token, req, start))
        return OK

    def _http_thread(self, http, token, req, start):
        method, url, headers, data = req
        status, body = _http_request(method, url, headers, data, self.auth_url,
                                     self.http_timeout)
        wait = max(0.0, self.http_delay - (time.monotonic() - start))
        self._post(lambda: self._http_done(http, token, method, status, body), wait)

    def _http_done(self, http, token, method, status, body):
        if http is not self._http or http["token"] is not token:
            return      # HTTPTERM or a reboot came first
        http["busy"] = False
        if not self.bearer_open:
            status, body = 601, b""
        http["status"], http["body"] = status, body
        self._emit(_lines("+HTTPACTION: %d,%d,%d" % (method, status, len(body))))

    def _cmd_HTTPREAD(self, kind, args):
        if self._http is None or self._http["body"] is None or kind not in ("exec", "set"):
            return ERROR
        body = self._http["body"]
        if kind == "set":
            p = parse_params(args)
            if len(p) != 2:
                raise ParamError("HTTPREAD=start,size")
            start, size = _int(p[0]), _int(p[1], 1)
            body = body[start:start + size]
        return _lines("+HTTPREAD: %d" % len(body)) + body + OK

    # ----- MQTT: configuration and link -----------------------------------------------
    def _cmd_MCONFIG(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) not in (3, 7):
            raise ParamError("MCONFIG needs clientid,user,password[,will...]")
        cid, user, pwd = (x[0] for x in p[:3])
        if not cid or max(len(cid), len(user), len(pwd)) > MCONFIG_MAX:
            raise ParamError("bad MCONFIG value")
        will = None
        if len(p) == 7:
            wq, wr = _int(p[3], 0, 2), _int(p[4], 0, 1)
            will = (p[5][0], decode_escapes(p[6][0]), wq, wr)
        self._mconfig = (cid, user, pwd, will)
        return OK

    def _cmd_MIPSTART(self, kind, args, tls=False):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 2:
            raise ParamError("MIPSTART needs host,port")
        host, port = p[0][0], _int(p[1], 1, 65535)
        if not host:
            raise ParamError("empty host")
        if self._connecting is not None:
            return cme(CME_NOT_ALLOWED)
        if self._link is not None and self._link.alive:
            self._after.append(lambda: self._emit(_lines("ALREADY CONNECT")))
            return OK
        state = None
        if not self.attached or self._pdp_lost:
            state = "PDP DEACT" if self._pdp_lost else "IP INITIAL"
        elif self.mqtt_needs_bearer and not self.bearer_open:
            state = "IP INITIAL"
        if state:
            self._after.append(lambda: self._emit(_lines("STATE: " + state, "CONNECT FAIL")))
            return OK
        token = object()
        self._connecting = token
        start = time.monotonic()
        self._after.append(lambda: self._spawn(self._connect_thread, "vmodule-connect",
                                               token, host, port, tls, start))
        return OK

    def _cmd_SSLMIPSTART(self, kind, args):
        return self._cmd_MIPSTART(kind, args, tls=True)

    def _connect_thread(self, token, host, port, tls, start):
        addr = _map_host(host, port, self.mqtts_addr if tls else self.mqtt_addr)
        sock = None
        if addr is not None:
            try:
                sock = socket.create_connection(addr, timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    sock = ctx.wrap_socket(sock, server_hostname=host)
                sock.settimeout(5.0)
            except (OSError, ssl.SSLError):
                if sock is not None:
                    _close_sock(sock)
                sock = None
        wait = max(0.0, self.connect_delay - (time.monotonic() - start))
        self._post(lambda: self._connect_done(token, sock, tls), wait)

    def _connect_done(self, token, sock, tls):
        if self._connecting is not token:
            if sock is not None:
                _close_sock(sock)
            return      # MIPCLOSE, a PDP loss or a reboot came first
        self._connecting = None
        if sock is None:
            self._emit(_lines("STATE: TCP CLOSED", "CONNECT FAIL"))
            return
        link = _Link(sock, tls)
        self._link = link
        self._mip_open = True
        self._spawn(self._link_reader, "vmodule-mqtt-rx", link)
        self._emit(_lines("CONNECT OK"))
        if self.idle_close:
            self._post(lambda: self._idle_check(link), self.idle_close)

    def _idle_check(self, link):
        if link is self._link and link.alive and not link.connect_sent and not link.mqtt:
            self._link_down(link, urc=True)     # the server dropped the idle socket

    def _link_reader(self, link):
        buf = bytearray()
        sock = link.sock
        while link.alive:
            try:
                if not (link.tls and sock.pending()):
                    r, _, _ = select.select([sock], [], [], 0.5)
                    if not r:
                        continue
                with link.io:
                    # never block while holding the lock: a readable TLS socket may carry
                    # only a record without data (a session ticket)
                    sock.settimeout(0.0)
                    try:
                        data = sock.recv(65536)
                    finally:
                        sock.settimeout(5.0)
            except (BlockingIOError, TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (OSError, ValueError):
                data = b""
            if not data:
                break
            buf += data
            try:
                while True:
                    pkt = _take_packet(buf)
                    if pkt is None:
                        break
                    self._post(lambda p=pkt: self._on_packet(link, *p))
            except ValueError:
                break
        self._post(lambda: self._link_down(link, urc=True))

    def _link_down(self, link, urc):
        """The link is gone (server close, keepalive expiry, idle drop, fault)."""
        if link is not self._link:
            return
        if link.connack_in:             # report the CONNACK first (refusal: then close)
            link.peer_closed = True
            return
        was_alive = link.alive
        link.close()
        self._link = None
        self._mip_open = False
        if urc and was_alive:
            self._emit(_lines("CLOSED"))

    def _close_link_quietly(self):
        link, self._link = self._link, None
        if link:
            link.close()
        self._connecting = None

    def _cmd_MIPCLOSE(self, kind, args):
        if kind not in ("exec", "set"):
            return ERROR
        if self._link is None and self._connecting is None and not self._mip_open:
            return cme(CME_FAILED)
        self._close_link_quietly()
        self._mip_open = False
        return OK

    # ----- MQTT: session --------------------------------------------------------------
    def _cmd_MCONNECT(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 2:
            raise ParamError("MCONNECT needs clean,keepalive")
        clean, keepalive = _int(p[0], 0, 1), _int(p[1], 0, 65535)
        link = self._link
        if link is None or not link.alive or link.mqtt or link.connect_sent \
                or self._mconfig is None:
            return cme(CME_FAILED)
        link.connect_sent = True
        link.keepalive = keepalive
        cid, user, pwd, will = self._mconfig
        flags = 0x02 if clean else 0
        payload = _mstr(_b(cid))
        if will:
            wt, wm, wq, wr = will
            flags |= 0x04 | (wq << 3) | (0x20 if wr else 0)
            payload += _mstr(_b(wt)) + _mstr(_b(wm))
        if user:
            flags |= 0x80
            payload += _mstr(_b(user))
            if pwd:
                flags |= 0x40
                payload += _mstr(_b(pwd))
        pkt = _mpacket(0x10, _mstr(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
                       + payload)
        self._after.append(lambda: self._link_send(link, pkt))
        self._post(lambda: self._connack_timeout(link), self.connack_timeout)
        return OK

    def _connack_timeout(self, link):
        if link is self._link and link.alive and link.connect_sent and not link.mqtt:
            self._emit(ERROR)
            link.connect_sent = False
            self._close_link_quietly()
            self._mip_open = False

    def _link_send(self, link, pkt):
        if link is not self._link or not link.alive:
            return False
        try:
            link.send(pkt)
            return True
        except OSError:
            self._link_down(link, urc=True)
            return False

    def _on_packet(self, link, first, body):
        if link is not self._link or not link.alive:
            return
        ptype = first >> 4
        if ptype == 2:                                   # CONNACK
            rc = body[1] if len(body) >= 2 else 255
            link.connack_in = True
            self._post(lambda: self._connack(link, rc), self.connack_delay)
        elif ptype == 3:                                 # PUBLISH
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic, rest = body[2:2 + tlen], body[2 + tlen:]
            if qos:
                pid, rest = rest[:2], rest[2:]
                if qos == 1:
                    self._link_send(link, _mpacket(0x40, pid))
                else:
                    self._link_send(link, _mpacket(0x50, pid))
                    if pid in link.qos2_in:
                        return
                    link.qos2_in.add(pid)
            self._downlink(topic, rest)
        elif ptype == 6:                                 # PUBREL
            link.qos2_in.discard(body[:2])
            self._link_send(link, _mpacket(0x70, body[:2]))
        elif ptype == 4:                                 # PUBACK
            pid = struct.unpack("!H", body[:2])[0]
            if pid == link.qos1_pid:
                self._post(lambda: self._puback(link, pid), self.puback_delay)
        elif ptype in (9, 11):                           # SUBACK / UNSUBACK
            pid = struct.unpack("!H", body[:2])[0]
            what = link.subs.pop(pid, None)
            if what:
                self._post(lambda: self._link_urc(link, what), self.suback_delay)
        elif ptype == 13:                                # PINGRESP
            link.ping_sent = None
            self.stats["pingresp"] += 1

    def _connack(self, link, rc):
        if link is not self._link or not link.alive or not link.connect_sent:
            return
        self.connack_code = rc
        link.connect_sent = False
        link.connack_in = False
        if rc == 0:
            link.mqtt = True
            self._emit(_lines("CONNACK OK"))
            if link.peer_closed:
                self._link_down(link, urc=True)
                return
            self._schedule_ping(link)
        else:
            self._emit(ERROR)                # refused: OK ... then a bare ERROR
            self._close_link_quietly()       # the broker closes the socket (inferred: no CLOSED)
            self._mip_open = False

    def _puback(self, link, pid):
        if link is self._link and link.alive and link.qos1_pid == pid:
            link.qos1_pid = None
            self._emit(_lines("PUBACK"))

    def _link_urc(self, link, what):
        if link is self._link and link.alive:
            self._emit(_lines(what))

    def _schedule_ping(self, link):
        period = self.ping_interval or link.keepalive
        if not period:
            return
        now = time.monotonic()
        if link.ping_sent is not None:
            due = link.ping_sent + period
        else:
            due = link.last_tx + period
        self._post(lambda: self._ping_tick(link), max(0.0, due - now))

    def _ping_tick(self, link):
        if link is not self._link or not link.alive or not link.mqtt:
            return
        period = self.ping_interval or link.keepalive
        now = time.monotonic()
        if link.ping_sent is not None:
            if now - link.ping_sent >= period:          # no PINGRESP within a period
                self._link_down(link, urc=True)
                return
        elif now - link.last_tx >= period - 0.001:
            if not self._link_send(link, b"\xc0\x00"):
                return
            link.ping_sent = now
            self.stats["pingreq"] += 1
        self._schedule_ping(link)

    def _need_session(self):
        link = self._link
        return link if (link is not None and link.alive and link.mqtt) else None

    def _cmd_MSUB(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 2 or not p[0][0]:
            raise ParamError("MSUB needs topic,qos")
        topic, qos = p[0][0], _int(p[1], 0, 2)
        link = self._need_session()
        if link is None:
            return cme(CME_FAILED)
        pid = link.pid()
        link.subs[pid] = "SUBACK"
        pkt = _mpacket(0x82, struct.pack("!H", pid) + _mstr(_b(topic)) + bytes([qos]))
        self._after.append(lambda: self._link_send(link, pkt))
        return OK

    def _cmd_MUNSUB(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 1 or not p[0][0]:
            raise ParamError("MUNSUB needs topic")
        link = self._need_session()
        if link is None:
            return cme(CME_FAILED)
        pid = link.pid()
        link.subs[pid] = "UNSUBACK"
        pkt = _mpacket(0xA2, struct.pack("!H", pid) + _mstr(_b(p[0][0])))
        self._after.append(lambda: self._link_send(link, pkt))
        return OK

    def _publish(self, link, topic, qos, retain, payload):
        """The PUBLISH packet for MPUB and MPUBEX (a QoS 1 one becomes the pending one)."""
        pid = b""
        if qos == 1:
            link.qos1_pid = link.pid()
            pid = struct.pack("!H", link.qos1_pid)
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        self.stats["published"] += 1
        return _mpacket(first, _mstr(_b(topic)) + pid + payload)

    def _cmd_MPUB(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 4 or not p[0][0] or not p[3][1]:
            raise ParamError("MPUB needs topic,qos,retain,\"msg\"")    # msg must be quoted
        topic, qos, retain = p[0][0], _int(p[1], 0, 1), _int(p[2], 0, 1)
        msg = _b(decode_escapes(p[3][0]))
        link = self._need_session()
        if link is None or len(msg) > MPUB_MAX or (qos == 1 and link.qos1_pid is not None):
            return cme(CME_FAILED)
        pkt = self._publish(link, topic, qos, retain, msg)
        self._after.append(lambda: self._link_send(link, pkt))
        return OK

    def _cmd_MPUBEX(self, kind, args):
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 4 or not p[0][0]:
            raise ParamError("MPUBEX needs topic,qos,retain,len")
        topic, qos, retain = p[0][0], _int(p[1], 0, 1), _int(p[2], 0, 1)
        n = _int(p[3], 1)
        link = self._need_session()
        if link is None or n > self.mpubex_max or (qos == 1 and link.qos1_pid is not None):
            return cme(CME_FAILED)
        if not self._reply_pause():
            return None
        self._emit(b"\r\n> ")
        data = self._read_raw(n, self.data_timeout)
        if data is None:
            return None if self._abort else ERROR
        if self.mpubex_echo:
            self._emit(data)
        if self._need_session() is not link:
            return cme(CME_FAILED)
        if qos == 1 and link.qos1_pid is not None:
            return cme(CME_FAILED)
        pkt = self._publish(link, topic, qos, retain, data)
        self._after.append(lambda: self._link_send(link, pkt))
        return OK

    def _cmd_MQTTMSGSET(self, kind, args):
        if kind == "read":
            return _lines("+MQTTMSGSET: %d" % self.msg_mode) + OK
        if kind != "set":
            return ERROR
        p = parse_params(args)
        if len(p) != 1:
            raise ParamError("MQTTMSGSET needs a mode")
        self.msg_mode = _int(p[0], 0, 1)
        return OK

    def _downlink(self, topic, payload):
        self.stats["downlinks"] += 1
        if self.msg_mode == 0:
            self._emit(b'\r\n+MSUB: "' + topic + b'",' + b"%d byte," % len(payload)
                       + payload + b"\r\n")
            return
        slot = self._cache_next
        self._cache[slot] = (topic, payload)
        self._cache_next = (slot + 1) % 4
        if slot in self._cache_order:
            self._cache_order.remove(slot)
        self._cache_order.append(slot)
        self._emit(_lines("+MSUB: %d" % slot))

    def _cmd_MQTTMSGGET(self, kind, args):
        if kind != "exec":
            return ERROR
        out = b""
        q = b'"' if self.msgget_quote_topic else b""
        for slot in self._cache_order:
            topic, payload = self._cache[slot]
            out += (b"\r\n+MSUB: " + q + topic + q + b"," + b"%d byte," % len(payload)
                    + payload + b"\r\n")
        self._cache = [None] * 4
        self._cache_order = []
        return out + OK

    def _cmd_MQTTSTATU(self, kind, args):
        if kind != "exec":
            return ERROR
        return _lines("+MQTTSTATU :%d" % self.mqtt_state) + OK

    def _cmd_MDISCONNECT(self, kind, args):
        if kind != "exec":
            return ERROR
        link = self._need_session()
        if link is None:
            return cme(CME_FAILED)
        link.mqtt = False
        try:
            link.send(b"\xe0\x00")
        except OSError:
            pass
        self._close_link_quietly()
        self._mip_open = True       # AT+MIPCLOSE still answers OK (inferred)
        return OK

    # ----- network loss ---------------------------------------------------------------
    def _lose_network(self, urc):
        """PDP context gone: bearer, HTTP action and the broker link go with it."""
        had_link = self._link is not None and self._link.alive
        if urc:
            self._emit(_lines(urc))
        self.bearer_open = False
        self.bearer_ip = None
        self._close_link_quietly()
        self._mip_open = False
        if had_link:
            self._emit(_lines("CLOSED"))       # (inferred) the socket reports its loss too
        if self._http and self._http["busy"]:
            http, token = self._http, self._http["token"]
            self._post(lambda: self._http_done(http, token, 1, 601, b""))

    def _restart_attach(self, down):
        if isinstance(down, float):
            self._attach_polls, self._attach_at = 0, time.monotonic() + down
        else:
            self._attach_polls, self._attach_at = int(down), 0.0

    # ----- fault injection (thread-safe; each also schedulable) -----------------------
    def _count(self, kind):
        self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1

    def closed(self):
        """Drop the broker link now and print CLOSED."""
        def run():
            self._count("closed")
            self._close_link_quietly()
            self._mip_open = False
            self._emit(_lines("CLOSED"))
        return self._call(run)

    def lost_session(self):
        """The broker link dies and the module prints nothing (a drop it missed): only
        AT+MQTTSTATU (0) tells. Tests the host's dead-link detection."""
        def run():
            self._count("lost_session")
            self._close_link_quietly()
            self._mip_open = False
        return self._call(run)

    def pdp_loss(self, down=2, urc="+PDP: DEACT"):
        """`+PDP: DEACT` (or urc=`+PDP DEACT`, `+CGEV: NW PDN DEACT 1`, `+SAPBR 1: DEACT`);
        bearer and link gone (`CLOSED` too when a link was up); CGATT? answers 0 for `down`
        polls (int) or seconds (float)."""
        def run():
            self._count("pdp_loss")
            self._pdp_lost = True
            self._restart_attach(down)
            self._lose_network(urc)
        return self._call(run)

    def reboot(self):
        """Module restart: `RDY`, `+CPIN: READY`; all state lost, echo on, still trained."""
        with self._cv:
            self._abort = True
            self._cv.notify_all()
        return self._call(lambda: self._do_reboot(count=True))

    def _do_reboot(self, count):
        if count:
            self._count("reboot")
        with self._cv:
            self._abort = False
            self._inbuf.clear()
        self._power_on(trained=True)
        self._emit(_lines("RDY"))
        self._emit(_lines("+CPIN: READY" if self.sim_present else "+CPIN: NOT INSERTED"))

    def power_cycle(self):
        """Power off and on: silent, autobaud needed again, all state lost."""
        with self._cv:
            self._abort = True
            self._cv.notify_all()

        def run():
            self._count("power_cycle")
            with self._cv:
                self._abort = False
                self._inbuf.clear()
            self._power_on(trained=False)
        return self._call(run)

    def garbage(self, data=None):
        """Noise on the TX line: the given bytes or 4..24 random (seeded) bytes."""
        def run():
            self._count("garbage")
            r = self._garbage_rng
            d = data if data is not None else bytes(
                r.randrange(256) for _ in range(r.randint(4, 24)))
            self._emit(d)
            return d
        return self._call(run)

    def drop_bytes(self, n):
        """The next n bytes of output are lost."""
        def run():
            self._count("drop_bytes")
            self._drop += n
        return self._call(run)

    def mute(self, n=1, execute=False):
        """The next n commands get no reply at all (no echo either). execute=True: they
        still take effect (a lost reply); default: lost on the way in."""
        def run():
            self._count("mute")
            self._mute.extend([execute] * n)
        return self._call(run)

    def slow(self, seconds):
        """Delay every command reply by `seconds` more (0 ends it)."""
        def run():
            self._count("slow")
            self._slow = seconds
        return self._call(run)

    def sim_removed(self):
        """`+CPIN: SIM REMOVED`: the network and the SIM queries go with it."""
        def run():
            self._count("sim_removed")
            self.sim_present = False
            self._lose_network("+CPIN: SIM REMOVED")
        return self._call(run)

    def sim_inserted(self):
        """The SIM is back: `+CPIN: READY`, attach starts over (attach_after)."""
        def run():
            self._count("sim_inserted")
            self.sim_present = True
            self._restart_attach(self.attach_after)
            self._emit(_lines("+CPIN: READY"))
        return self._call(run)

    def schedule(self, kind, *args, delay=None, on_command=None, nth=1, **kwargs):
        """Inject fault `kind` later: after `delay` seconds, or right after the reply to
        the nth command starting with `on_command` (e.g. "AT+MPUB")."""
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault %r" % kind)
        fn = getattr(self, kind)
        if on_command is not None:
            with self._cv:
                self._triggers.append([on_command.upper(), nth, fn, args, kwargs])
        else:
            t = threading.Timer(delay or 0.0, lambda: fn(*args, **kwargs))
            t.daemon = True
            t.start()

    def _check_triggers(self, cmd):
        up = cmd.upper()
        fire = []
        with self._cv:
            for trig in list(self._triggers):
                if up.startswith(trig[0]):
                    trig[1] -= 1
                    if trig[1] <= 0:
                        self._triggers.remove(trig)
                        fire.append(trig)
        for _prefix, _n, fn, args, kwargs in fire:
            fn(*args, **kwargs)      # on the CPU thread: runs at once

    # ----- helpers for tests ----------------------------------------------------------
    def wait_command(self, prefix, timeout=5.0, count=1):
        """Wait until `count` commands starting with prefix were received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for c in self.commands if c.upper().startswith(prefix.upper())) >= count:
                return True
            time.sleep(0.01)
        return False

    def transcript(self):
        """The log as readable text (for failing tests)."""
        return "\n".join("%s %r" % (d, b) for d, b in self.log)


# ---------------------------------------------------------------------------------------
# DNS and HTTP as the module sees them
# ---------------------------------------------------------------------------------------
def _map_host(host, port, cloud_addr):
    """Where a connection to host:port really goes, or None (DNS failure)."""
    h = host.lower().rstrip(".")
    if h.endswith("aliyuncs.com"):
        return cloud_addr
    if h in ("127.0.0.1", "localhost"):
        return ("127.0.0.1", port)
    return None


def _http_request(method, url, headers, data, auth_url, timeout):
    """Perform the module's HTTP request; returns (status, body). Module statuses:
    601 network error, 603 DNS error."""
    import http.client
    try:
        u = urlsplit(url)
    except ValueError:
        return 603, b""
    if u.scheme not in ("http", "https") or not u.hostname:
        return 603, b""
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    host = u.hostname.lower()
    if host.endswith("aliyuncs.com"):
        if not auth_url:
            return 603, b""
        base = urlsplit(auth_url)
        scheme, thost, tport = base.scheme, base.hostname, base.port
        path = base.path.rstrip("/") + path
    elif host in ("127.0.0.1", "localhost"):
        scheme, thost, tport = u.scheme, "127.0.0.1", u.port
    else:
        return 603, b""
    try:
        if scheme == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(thost, tport, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(thost, tport, timeout=timeout)
        try:
            verb = ("GET", "POST", "HEAD")[method]
            conn.putrequest(verb, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", u.netloc)
            names = set()
            for h in headers:
                name, _, value = h.partition(":")
                names.add(name.strip().lower())
                conn.putheader(name.strip(), value.strip())
            if method == 1 and "content-length" not in names:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data if method == 1 and data else None)
            resp = conn.getresponse()
            body = resp.read() if method != 2 else b""
            return resp.status, body
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return 601, b""


def _close_sock(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def _addr(text):
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def _number(text):
    return float(text) if "." in text else int(text)


def main(argv=None):
    import argparse
    import signal
    ap = argparse.ArgumentParser(description="A virtual Air724UG on a TCP port.")
    ap.add_argument("--auth-url", help="local auth endpoint base, http://127.0.0.1:PORT")
    ap.add_argument("--mqtt", type=_addr, help="local broker for MIPSTART, HOST:PORT")
    ap.add_argument("--mqtts", type=_addr, help="local TLS broker for SSLMIPSTART, HOST:PORT")
    ap.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: free)")
    ap.add_argument("--baud", type=int, default=0, help="emulated UART speed (0: unpaced)")
    ap.add_argument("--connect-delay", type=float, default=0.0)
    ap.add_argument("--reply-delay", type=float, default=0.0)
    ap.add_argument("--http-delay", type=float, default=0.0)
    ap.add_argument("--idle-close", type=float, default=5.0)
    ap.add_argument("--version", default=DEFAULT_VERSION)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--attach-after", type=_number, default=0,
                    help="CGATT 0 for N polls (int) or seconds (float)")
    ap.add_argument("--imei", default="866714043075174")
    ap.add_argument("--iccid", default="89860425102180123456")
    ap.add_argument("--seed", type=int, default=724)
    ap.add_argument("--fault", action="append", default=[], metavar="KIND@SECONDS",
                    help="schedule a fault, e.g. closed@30 (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the UART traffic")
    a = ap.parse_args(argv)
    vm = VirtualModule(auth_url=a.auth_url, mqtt_addr=a.mqtt, mqtts_addr=a.mqtts, baud=a.baud,
                       port=a.port, version=a.version, sim=not a.no_sim,
                       attach_after=a.attach_after, imei=a.imei, iccid=a.iccid, seed=a.seed,
                       reply_delay=a.reply_delay, connect_delay=a.connect_delay,
                       http_delay=a.http_delay, idle_close=a.idle_close)
    stop = threading.Event()  # before the URL is announced: a SIGTERM right after it stops cleanly
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    vm.start()
    for f in a.fault:
        kind, _, at = f.partition("@")
        vm.schedule(kind, delay=float(at or 0))
    print(vm.url, flush=True)
    shown = 0
    try:
        while not stop.wait(0.2):
            if a.verbose:
                while shown < len(vm.log):
                    d, b = vm.log[shown]
                    shown += 1
                    sys.stderr.write("%s %r\n" % (d, b))
    except KeyboardInterrupt:
        pass
    vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
