"""The module's MQTT 3.1.1 client: the credentials (MCONFIG), the TCP/TLS link (MIPSTART,
SSLMIPSTART, MIPCLOSE), the session (MCONNECT, MDISCONNECT, MQTTSTATU, PINGREQ on its own),
publishing (MPUB, MPUBEX), subscriptions (MSUB, MUNSUB) and downlinks (`+MSUB` pushed, or
cached and read with MQTTMSGGET, by MQTTMSGSET), plus the link's faults (closed,
lost_session). Broker hosts under aliyuncs.com go to the local cloud (mqtt_addr for
MIPSTART, mqtts_addr for SSLMIPSTART). SSLMIPSTART takes the TLS settings of the family's
MQTT SSL context (88 on the Air780 family, AT+SSLCFG) as they are when it is sent: with
seclevel 1 the broker's certificate is verified (net.py), and a failed handshake is
`STATE: TCP CLOSED` + `CONNECT FAIL` like a refused connection (inferred).

Written here, not with paho, because the module opens the TCP/TLS link (MIPSTART) and sends
CONNECT (MCONNECT) as two separate steps, and must never reconnect or retransmit on its own.

Where the dialect documents are silent (inferred):
- MIPSTART always answers OK first, then one of CONNECT OK / ALREADY CONNECT /
  `STATE: <s>` + CONNECT FAIL (s: IP INITIAL no bearer, PDP DEACT after a PDP loss,
  TCP CLOSED refused or unknown host); a second MIPSTART while connecting: +CME ERROR: 3.
- On an Air724, MQTT commands need the bearer (SAPBR=1,1) like HTTP does
  (mqtt_needs_bearer=True); an Air780 connects over its default PDP context (capture).
- A refused CONNACK: OK, ERROR, and the link is closed without a CLOSED line.
- PDP loss / SIM removal with a link up: the URC, then CLOSED (Air724); the Air780 family
  prints only the URC and its MIPCLOSE still answers OK (vendor example).
- A downlink longer than the family's msub_max is not delivered (inferred).
- Cached downlinks: `+MSUB: <slot>` with slot 0..3; AT+MQTTMSGGET prints the kept messages
  oldest first as `+MSUB: <topic>,<len> byte,<payload>` (topic unquoted) and empties the cache.
- MDISCONNECT sends DISCONNECT and closes the socket; MIPCLOSE afterwards still answers OK.
"""
import select
import socket
import ssl
import struct
import threading
import time

from tools.sim.core import Part
from tools.sim.dialect import CME_FAILED, CME_NOT_ALLOWED, ERROR, OK, ParamError, b, cme, decode_escapes, integer, lines, set_params
from tools.sim.net import TLSSetupError, close_socket, resolve


# ---------------------------------------------------------------------------------------
# MQTT 3.1.1 wire format (client side)
# ---------------------------------------------------------------------------------------
def _mstr(data):
    return struct.pack("!H", len(data)) + data


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
        close_socket(self.sock)


# ---------------------------------------------------------------------------------------
# The part
# ---------------------------------------------------------------------------------------
class Mqtt(Part):
    """mqtt_addr / mqtts_addr: the local broker for MIPSTART / SSLMIPSTART. Delays (s):
    connect_delay (MIPSTART -> CONNECT OK at least), connack_delay, suback_delay,
    puback_delay. idle_close: seconds between CONNECT OK and MCONNECT after which the server
    drops the socket and the module prints CLOSED (None/0: never). connack_timeout,
    connect_timeout, data_timeout (MPUBEX data): the module's own. ping_interval: override
    the PINGREQ period (default: the MCONNECT keepalive), so that a test can see pings
    without waiting 30 s. mpubex: the command exists; mpubex_echo: it echoes the data (some
    firmware did so, even after ATE0); msgget_quote_topic: AT+MQTTMSGGET prints the topic
    quoted (default unquoted); mqtt_needs_bearer: MIPSTART needs AT+SAPBR=1,1 (default: the
    family's)."""

    OPTIONS = {"mqtt_addr": None, "mqtts_addr": None, "connect_delay": 0.0, "connack_delay": 0.0,
               "suback_delay": 0.0, "puback_delay": 0.0, "idle_close": 5.0, "connack_timeout": 10.0,
               "connect_timeout": 10.0, "data_timeout": 10.0, "ping_interval": None, "mpubex": True,
               "mpubex_echo": False, "msgget_quote_topic": False, "mqtt_needs_bearer": None}
    COMMANDS = {"+MCONFIG": "mconfig", "+MIPSTART": "mipstart", "+SSLMIPSTART": "sslmipstart",
                "+MIPCLOSE": "mipclose", "+MCONNECT": "mconnect", "+MDISCONNECT": "mdisconnect",
                "+MQTTSTATU": "mqttstatu", "+MSUB": "msub", "+MUNSUB": "munsub", "+MPUB": "mpub",
                "+MPUBEX": "mpubex_cmd", "+MQTTMSGSET": "msgset", "+MQTTMSGGET": "msgget"}
    FAULTS = {"closed": "closed", "lost_session": "lost_session"}

    def __init__(self, core, **options):
        super().__init__(core, **options)
        for name in ("mqtt_addr", "mqtts_addr"):
            addr = getattr(self, name)
            setattr(self, name, tuple(addr) if addr else None)
        if self.mqtt_needs_bearer is None:
            self.mqtt_needs_bearer = core.personality.mqtt_needs_bearer
        self.stats = {"pingreq": 0, "pingresp": 0, "published": 0, "downlinks": 0, "downlinks_lost": 0}
        self.connack_code = None    # return code of the last CONNACK (None: none yet)
        self.link = None

    def commands(self):
        table = super().commands()
        if not self.mpubex:
            del table["+MPUBEX"]
        return table

    # ----- state ----------------------------------------------------------------------
    def reset(self):
        self._mconfig = None            # (clientid, user, password, will)
        if self.link:
            self.link.close()
        self.link = None
        self._connecting = None         # token of the MIPSTART in progress
        self._mip_open = False          # the host has a link to MIPCLOSE
        self.msg_mode = 1               # AT+MQTTMSGSET: 1 cached (power-up default), 0 push
        self._cache = [None] * 4
        self._cache_next = 0
        self._cache_order = []

    def close(self):
        if self.link:
            self.link.close()

    def network_lost(self):
        had_link = self.link is not None and self.link.alive
        self._close_quietly()
        if self.core.personality.closed_on_pdp_loss:
            self._mip_open = False
            if had_link:
                self.core.emit(lines("CLOSED"))     # (inferred) the socket reports its loss too
        elif had_link:
            self._mip_open = True               # AT+MIPCLOSE answers OK (vendor example)

    @property
    def state(self):
        """What AT+MQTTSTATU reports: 0 offline, 1 connected, 2 TCP up without MQTT."""
        link = self.link
        if link is None or not link.alive:
            return 0
        return 1 if link.mqtt else 2

    def _session(self):
        link = self.link
        return link if (link is not None and link.alive and link.mqtt) else None

    def _close_quietly(self):
        link, self.link = self.link, None
        if link:
            link.close()
        self._connecting = None

    # ----- faults ---------------------------------------------------------------------
    def closed(self):
        """Drop the broker link now and print CLOSED."""
        self._close_quietly()
        self._mip_open = False
        self.core.emit(lines("CLOSED"))

    def lost_session(self):
        """The broker link dies and the module prints nothing (a drop it missed): only
        AT+MQTTSTATU (0) tells. Tests the host's dead-link detection."""
        self._close_quietly()
        self._mip_open = False

    # ----- configuration and link -----------------------------------------------------
    def mconfig(self, kind, args):
        p = set_params(kind, args, 3, 7)  # clientid, user, password[, will flag, qos, retain, topic, message]
        cid, user, pwd = (x[0] for x in p[:3])
        if not cid or max(len(cid), len(user), len(pwd)) > self.core.personality.mconfig_max:
            raise ParamError("bad MCONFIG value")
        will = None
        if len(p) == 7:
            wq, wr = integer(p[3], 0, 2), integer(p[4], 0, 1)
            will = (p[5][0], decode_escapes(p[6][0]), wq, wr)
        self._mconfig = (cid, user, pwd, will)
        return OK

    def mipstart(self, kind, args, tls=False):
        p = set_params(kind, args, 2)  # host, port
        host, port = p[0][0], integer(p[1], 1, 65535)
        if not host:
            raise ParamError("empty host")
        if self._connecting is not None:
            return cme(CME_NOT_ALLOWED)
        core, net = self.core, self.core.net
        if self.link is not None and self.link.alive:
            core.after(lambda: core.emit(lines("ALREADY CONNECT")))
            return OK
        state = None
        if not net.attached or net.pdp_lost:
            state = "PDP DEACT" if net.pdp_lost else "IP INITIAL"
        elif self.mqtt_needs_bearer and not net.bearer_open:
            state = "IP INITIAL"
        if state:
            core.after(lambda: core.emit(lines("STATE: " + state, "CONNECT FAIL")))
            return OK
        settings = None
        if tls:
            try:
                settings = net.tls_settings(core.personality.mqtt_ssl_context)
            except TLSSetupError as e:      # nothing to verify with: the handshake fails
                net.tls_refused(core.personality.mqtt_ssl_context, host, e)
                core.after(lambda: core.emit(lines("STATE: TCP CLOSED", "CONNECT FAIL")))
                return OK
        token = object()
        self._connecting = token
        start = time.monotonic()
        core.after(lambda: core.spawn(self._connect_thread, "vmodule-connect", token, host, port, settings, start))
        return OK

    def sslmipstart(self, kind, args):
        return self.mipstart(kind, args, tls=True)

    def _connect_thread(self, token, host, port, settings, start):
        tls = settings is not None
        where = resolve(host)
        if where == "cloud":
            addr = self.mqtts_addr if tls else self.mqtt_addr
        else:
            addr = ("127.0.0.1", port) if where == "local" else None
        sock = None
        if addr is not None:
            try:
                sock = socket.create_connection(addr, timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls:
                    sock = self.core.net.tls_wrap(settings, sock, host)
                sock.settimeout(5.0)
            except (OSError, ssl.SSLError):
                if sock is not None:
                    close_socket(sock)
                sock = None
        wait = max(0.0, self.connect_delay - (time.monotonic() - start))
        self.core.post(lambda: self._connect_done(token, sock, tls), wait)

    def _connect_done(self, token, sock, tls):
        if self._connecting is not token:
            if sock is not None:
                close_socket(sock)
            return      # MIPCLOSE, a PDP loss or a restart came first
        self._connecting = None
        core = self.core
        if sock is None:
            core.emit(lines("STATE: TCP CLOSED", "CONNECT FAIL"))
            return
        link = _Link(sock, tls)
        self.link = link
        self._mip_open = True
        core.spawn(self._link_reader, "vmodule-mqtt-rx", link)
        core.emit(lines("CONNECT OK"))
        if self.idle_close:
            core.post(lambda: self._idle_check(link), self.idle_close)

    def _idle_check(self, link):
        if link is self.link and link.alive and not link.connect_sent and not link.mqtt:
            self._link_down(link)     # the server dropped the idle socket

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
                    self.core.post(lambda p=pkt: self._on_packet(link, *p))
            except ValueError:
                break
        self.core.post(lambda: self._link_down(link))

    def _link_down(self, link):
        """The link is gone (server close, keepalive expiry, idle drop): CLOSED."""
        if link is not self.link:
            return
        if link.connack_in:             # report the CONNACK first (refusal: then close)
            link.peer_closed = True
            return
        was_alive = link.alive
        link.close()
        self.link = None
        self._mip_open = False
        if was_alive:
            self.core.emit(lines("CLOSED"))

    def mipclose(self, kind, args):
        if kind not in ("exec", "set"):
            return ERROR
        if self.link is None and self._connecting is None and not self._mip_open:
            return cme(CME_FAILED)
        self._close_quietly()
        self._mip_open = False
        return OK

    # ----- session --------------------------------------------------------------------
    def mconnect(self, kind, args):
        p = set_params(kind, args, 2)  # clean, keepalive
        clean, keepalive = integer(p[0], 0, 1), integer(p[1], 0, 65535)
        link = self.link
        if link is None or not link.alive or link.mqtt or link.connect_sent or self._mconfig is None:
            return cme(CME_FAILED)
        link.connect_sent = True
        link.keepalive = keepalive
        cid, user, pwd, will = self._mconfig
        flags = 0x02 if clean else 0
        payload = _mstr(b(cid))
        if will:
            wt, wm, wq, wr = will
            flags |= 0x04 | (wq << 3) | (0x20 if wr else 0)
            payload += _mstr(b(wt)) + _mstr(b(wm))
        if user:
            flags |= 0x80
            payload += _mstr(b(user))
            if pwd:
                flags |= 0x40
                payload += _mstr(b(pwd))
        pkt = _mpacket(0x10, _mstr(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload)
        self.core.after(lambda: self._send(link, pkt))
        self.core.post(lambda: self._connack_timeout(link), self.connack_timeout)
        return OK

    def _connack_timeout(self, link):
        if link is self.link and link.alive and link.connect_sent and not link.mqtt:
            self.core.emit(ERROR)
            link.connect_sent = False
            self._close_quietly()
            self._mip_open = False

    def _send(self, link, pkt):
        if link is not self.link or not link.alive:
            return False
        try:
            link.send(pkt)
            return True
        except OSError:
            self._link_down(link)
            return False

    def _on_packet(self, link, first, body):
        if link is not self.link or not link.alive:
            return
        ptype = first >> 4
        post = self.core.post
        if ptype == 2:                                   # CONNACK
            rc = body[1] if len(body) >= 2 else 255
            link.connack_in = True
            post(lambda: self._connack(link, rc), self.connack_delay)
        elif ptype == 3:                                 # PUBLISH
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic, rest = body[2:2 + tlen], body[2 + tlen:]
            if qos:
                pid, rest = rest[:2], rest[2:]
                if qos == 1:
                    self._send(link, _mpacket(0x40, pid))
                else:
                    self._send(link, _mpacket(0x50, pid))
                    if pid in link.qos2_in:
                        return
                    link.qos2_in.add(pid)
            self._downlink(topic, rest)
        elif ptype == 6:                                 # PUBREL
            link.qos2_in.discard(body[:2])
            self._send(link, _mpacket(0x70, body[:2]))
        elif ptype == 4:                                 # PUBACK
            pid = struct.unpack("!H", body[:2])[0]
            if pid == link.qos1_pid:
                post(lambda: self._puback(link, pid), self.puback_delay)
        elif ptype in (9, 11):                           # SUBACK / UNSUBACK
            pid = struct.unpack("!H", body[:2])[0]
            what = link.subs.pop(pid, None)
            if what:
                post(lambda: self._link_urc(link, what), self.suback_delay)
        elif ptype == 13:                                # PINGRESP
            link.ping_sent = None
            self.stats["pingresp"] += 1

    def _connack(self, link, rc):
        if link is not self.link or not link.alive or not link.connect_sent:
            return
        self.connack_code = rc
        link.connect_sent = False
        link.connack_in = False
        if rc == 0:
            link.mqtt = True
            self.core.emit(lines("CONNACK OK"))
            if link.peer_closed:
                self._link_down(link)
                return
            self._schedule_ping(link)
        else:
            self.core.emit(ERROR)            # refused: OK ... then a bare ERROR
            self._close_quietly()            # the broker closes the socket (inferred: no CLOSED)
            self._mip_open = False

    def _puback(self, link, pid):
        if link is self.link and link.alive and link.qos1_pid == pid:
            link.qos1_pid = None
            self.core.emit(lines("PUBACK"))

    def _link_urc(self, link, what):
        if link is self.link and link.alive:
            self.core.emit(lines(what))

    def _schedule_ping(self, link):
        period = self.ping_interval or link.keepalive
        if not period:
            return
        now = time.monotonic()
        due = (link.ping_sent if link.ping_sent is not None else link.last_tx) + period
        self.core.post(lambda: self._ping_tick(link), max(0.0, due - now))

    def _ping_tick(self, link):
        if link is not self.link or not link.alive or not link.mqtt:
            return
        period = self.ping_interval or link.keepalive
        now = time.monotonic()
        if link.ping_sent is not None:
            if now - link.ping_sent >= period:          # no PINGRESP within a period
                self._link_down(link)
                return
        elif now - link.last_tx >= period - 0.001:
            if not self._send(link, b"\xc0\x00"):
                return
            link.ping_sent = now
            self.stats["pingreq"] += 1
        self._schedule_ping(link)

    def mqttstatu(self, kind, args):
        if kind != "exec":
            return ERROR
        return lines("+MQTTSTATU :%d" % self.state) + OK

    def mdisconnect(self, kind, args):
        if kind != "exec":
            return ERROR
        link = self._session()
        if link is None:
            return cme(CME_FAILED)
        link.mqtt = False
        try:
            link.send(b"\xe0\x00")
        except OSError:
            pass
        self._close_quietly()
        self._mip_open = True       # AT+MIPCLOSE still answers OK (inferred)
        return OK

    # ----- subscriptions and downlinks ------------------------------------------------
    def _subscription(self, what, packet_type, body):
        """SUBSCRIBE / UNSUBSCRIBE on the session: its packet id waits for `what` (its ack's URC)."""
        link = self._session()
        if link is None:
            return cme(CME_FAILED)
        pid = link.pid()
        link.subs[pid] = what
        pkt = _mpacket(packet_type, struct.pack("!H", pid) + body)
        self.core.after(lambda: self._send(link, pkt))
        return OK

    def msub(self, kind, args):
        topic, qos = self._topic_params(kind, args, 2)
        return self._subscription("SUBACK", 0x82, _mstr(b(topic)) + bytes([integer(qos, 0, 2)]))

    def munsub(self, kind, args):
        topic, = self._topic_params(kind, args, 1)
        return self._subscription("UNSUBACK", 0xA2, _mstr(b(topic)))

    def _topic_params(self, kind, args, count):
        """The topic (a str, not empty) and the other parameters of MSUB, MUNSUB, MPUB(EX)."""
        p = set_params(kind, args, count)
        if not p[0][0]:
            raise ParamError("no topic")
        return [p[0][0]] + p[1:]

    def msgset(self, kind, args):
        if kind == "read":
            return lines("+MQTTMSGSET: %d" % self.msg_mode) + OK
        self.msg_mode = integer(set_params(kind, args, 1)[0], 0, 1)
        return OK

    def _downlink(self, topic, payload):
        limit = self.core.personality.msub_max
        if limit is not None and len(payload) > limit:
            self.stats["downlinks_lost"] += 1       # more than the module can hold (inferred)
            return
        self.stats["downlinks"] += 1
        if self.msg_mode == 0:
            self.core.emit(b'\r\n+MSUB: "' + topic + b'",' + b"%d byte," % len(payload) + payload + b"\r\n")
            return
        slot = self._cache_next
        self._cache[slot] = (topic, payload)
        self._cache_next = (slot + 1) % 4
        if slot in self._cache_order:
            self._cache_order.remove(slot)
        self._cache_order.append(slot)
        self.core.emit(lines("+MSUB: %d" % slot))

    def msgget(self, kind, args):
        if kind != "exec":
            return ERROR
        out = b""
        q = b'"' if self.msgget_quote_topic else b""
        for slot in self._cache_order:
            topic, payload = self._cache[slot]
            out += b"\r\n+MSUB: " + q + topic + q + b"," + b"%d byte," % len(payload) + payload + b"\r\n"
        self._cache = [None] * 4
        self._cache_order = []
        return out + OK

    # ----- publishing -----------------------------------------------------------------
    def _publish(self, link, topic, qos, retain, payload):
        """Send the PUBLISH once the reply is out (a QoS 1 one becomes the pending one)."""
        pid = b""
        if qos == 1:
            link.qos1_pid = link.pid()
            pid = struct.pack("!H", link.qos1_pid)
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        self.stats["published"] += 1
        pkt = _mpacket(first, _mstr(b(topic)) + pid + payload)
        self.core.after(lambda: self._send(link, pkt))
        return OK


    def _can_publish(self, link, qos):
        """A session to publish on, and for QoS 1 none still waiting for its PUBACK."""
        return link is not None and not (qos == 1 and link.qos1_pid is not None)

    def mpub(self, kind, args):
        topic, qos, retain, msg = self._topic_params(kind, args, 4)
        if not msg[1]:
            raise ParamError("the message must be quoted")
        qos, retain = integer(qos, 0, 1), integer(retain, 0, 1)
        data = b(decode_escapes(msg[0]))
        link = self._session()
        if len(data) > self.core.personality.mpub_max or not self._can_publish(link, qos):
            return cme(CME_FAILED)
        return self._publish(link, topic, qos, retain, data)

    def mpubex_cmd(self, kind, args):
        topic, qos, retain, length = self._topic_params(kind, args, 4)
        qos, retain, n = integer(qos, 0, 1), integer(retain, 0, 1), integer(length, 1)
        link = self._session()
        if n > self.core.personality.mpubex_max or not self._can_publish(link, qos):
            return cme(CME_FAILED)
        core = self.core
        if not core.reply_pause():
            return None
        core.emit(b"\r\n> ")
        data = core.read_data(n, self.data_timeout)
        if data is None:
            return None if core.aborted else ERROR
        if self.mpubex_echo:
            core.emit(data)
        if self._session() is not link or not self._can_publish(link, qos):
            return cme(CME_FAILED)
        return self._publish(link, topic, qos, retain, data)
