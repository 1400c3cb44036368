# The Air72x (Air724UG family) driver: typed calls over the AT engine. It owns what the
# module's commands mean (../shared/AT_DIALECT.md): bring-up, the HTTP bearer and POST,
# MQTT connect/subscribe/publish, downlinks, and link events. It knows nothing of Aliyun.
#
# Downlinks and link events are queued when they arrive (possibly in the middle of another
# command) and handed to on_message / on_event from poll(), never from inside a command,
# so a handler may itself publish.
from firmware import log
from firmware.at import AT, ATAbort, ATError, ATTimeout, ModemError
from firmware.port import const, sleep_ms, ticks_add, ticks_diff, ticks_ms

_TAG = "air72x"
MIN_VERSION = const(409)  # Aliyun's MQTT needs module firmware V409 or later
MPUBEX_VERSION = const(907)  # AT+MPUBEX exists from V907 on
MPUB_MAX = const(2384)  # longest quoted AT+MPUB message (after escaping)
PAYLOAD_MAX = const(8192)  # longest payload the driver sends through AT+MPUBEX
_AT_TRIES = const(20)  # autobaud: upper-case AT this many times before giving up
_AT_MS = const(300)
_ATTACH_MS = const(60000)
_BEARER_MS = const(30000)
_CONNECT_MS = const(30000)  # MIPSTART/SSLMIPSTART until CONNECT OK
_CONNACK_MS = const(15000)
_ACK_MS = const(15000)  # SUBACK / PUBACK
_INBOX_MAX = const(32)  # downlinks held between two poll() calls

# URCs that mean the module rebooted or lost its SIM: every command stops waiting
_MODULE_LOST = (b"RDY", b"+CPIN: SIM REMOVED", b"+CPIN: NOT INSERTED")
# ... and for MQTT commands, the link going down as well
_LINK_LOST = _MODULE_LOST + (b"CLOSED", b"+PDP: DEACT", b"+PDP DEACT", b"+CGEV: NW PDN DEACT", b"+SAPBR 1: DEACT")

class NoAnswer(ModemError):
    """The module does not answer AT at all (autobaud failed)."""


class SimError(ModemError):
    """No SIM, or a SIM that is not ready (PIN, PUK)."""


class VersionError(ModemError):
    """The module firmware is too old for what was asked."""


class ConnectError(ModemError):
    """The TCP/TLS connection to the MQTT server could not be made."""


class CredentialsRefused(ModemError):
    """The MQTT server refused the CONNECT (CONNACK not accepted)."""


class LinkDown(ModemError):
    """The MQTT link (or the bearer, or the module) went away during a command."""


class HttpError(ModemError):
    """HTTP request failed in the module (status 6xx) or the answer could not be read."""

    def __init__(self, status, message):
        self.status = status
        super().__init__(message)


def escape(data):
    """Escape bytes for a quoted AT string: backslash, quote, CR, LF as \\5C \\22 \\0D \\0A.
    Nothing a user sends can end the string early or start another command."""
    return data.replace(b"\\", b"\\5C").replace(b'"', b"\\22").replace(b"\r", b"\\0D").replace(b"\n", b"\\0A")


def quoted(field, value):
    """A value for a quoted parameter that the module takes literally (topic, host,
    credentials): refuse what would break the quoting instead of mangling it."""
    if isinstance(value, bytes):
        value = value.decode()
    if not value:
        raise ValueError("%s: must not be empty" % field)
    for bad in ('"', "\r", "\n", "\\"):
        if bad in value:
            raise ValueError("%s: must not contain %r" % (field, bad))
    return value


def _version_number(text):
    i = text.find("_V")
    j = i + 2
    while j < len(text) and text[j].isdigit():
        j += 1
    return int(text[i + 2 : j]) if i >= 0 and j > i + 2 else None


def ints(line):
    """The integers after the colon of an information line: b'+CSQ: 20,99' -> [20, 99]."""
    out = []
    for part in line[line.find(b":") + 1 :].split(b","):
        try:
            out.append(int(part))
        except ValueError:
            out.append(None)
    return out


class Air72x:
    def __init__(self, uart, rxbuf=None):
        self.at = AT(uart) if rxbuf is None else AT(uart, rxbuf)
        at = self.at
        at.counted(b"+MSUB", b"byte,")
        at.counted(b"+HTTPREAD", b"\n")
        at.on(b"+MSUB", self._on_msub)
        at.on(b"CLOSED", self._on_closed)
        for p in (b"+PDP", b"+CGEV", b"+SAPBR"):
            at.on(p, self._on_pdp)
        at.on(b"RDY", self._on_rdy)
        at.on(b"+CPIN", self._on_cpin)
        for p in (b"SUBACK", b"UNSUBACK", b"PUBACK", b"CONNACK", b"CONNECT OK", b"OK", b"+HTTPACTION"):
            at.on(p, self._on_late)
        at.aborts = _MODULE_LOST
        self.on_message = None  # handler(topic: str, payload: bytes)
        self.on_event = None  # handler(name: str, detail: str)
        self.version = None
        self.version_number = None
        self.mqtt_connected = False
        self.bearer_up = False
        self._sim_lost = False
        self._inbox = []
        self._events = []
        self.stats = {"downlinks": 0, "downlinks_dropped": 0, "published": 0, "acked": 0, "events": 0}

    # ------------------------------------------------------------------ bring-up
    def start(self, attach_ms=_ATTACH_MS):
        """Autobaud, echo off, version check, SIM, signal, packet attach."""
        self.ready()
        self.wait_attach(attach_ms)

    def ready(self, tries=_AT_TRIES):
        """Autobaud, echo off (it is back on after every restart), version check, SIM,
        signal: the module answers and can be used. Returns the rssi."""
        self.autobaud(tries)
        self.at.cmd("ATE0")
        self.check_version()
        self.check_sim()
        rssi, _ = self.signal()
        log.info(_TAG, "module %s ready, signal %s", self.version, "unknown" if rssi == 99 else rssi)
        return rssi

    def autobaud(self, tries=_AT_TRIES):
        for _ in range(tries):
            try:
                self.at.cmd("AT", timeout=_AT_MS)
                return
            except ATTimeout:
                pass
            except ATError:
                pass  # a half-trained line answers ERROR once: try again
            except ATAbort:
                pass  # RDY / +CPIN: the module is just coming up: ask again
        raise NoAnswer(
            "module does not answer AT (%d tries): check power, TX/RX wiring (crossed), "
            "common ground, level shifting and baud rate" % tries
        )

    def check_version(self):
        lines = self.at.cmd("AT+CGMR", info=b"+CGMR")
        text = b" ".join(lines).decode()
        if text.startswith("+CGMR:"):
            text = text[6:]
        self.version = text.strip().strip('"')
        self.version_number = _version_number(self.version)
        if self.version_number is None or self.version_number < MIN_VERSION:
            raise VersionError(
                "module firmware %r is older than V%d: Aliyun needs V%d or later, upgrade it "
                "with Luatools" % (self.version, MIN_VERSION, MIN_VERSION)
            )
        return self.version

    def check_sim(self):
        try:
            lines = self.at.cmd("AT+CPIN?", info=b"+CPIN")
        except ATError as e:
            if e.code == 10:
                raise SimError("no SIM card (+CME ERROR: 10): insert a SIM with a data plan")
            raise
        state = lines[-1].split(b":", 1)[-1].strip().decode() if lines else "?"
        if state != "READY":
            raise SimError("SIM not ready: %s" % state)

    def signal(self):
        """(rssi 0..31 or 99 unknown, ber)."""
        lines = self.at.cmd("AT+CSQ", info=b"+CSQ")
        v = ints(lines[-1]) if lines else []
        return (v[0], v[1]) if len(v) >= 2 else (99, 99)

    def attached(self):
        lines = self.at.cmd("AT+CGATT?", info=b"+CGATT")
        return bool(lines) and ints(lines[-1])[:1] == [1]

    def wait_attach(self, timeout_ms=_ATTACH_MS):
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not self.attached():
            if ticks_diff(deadline, ticks_ms()) <= 0:
                raise ModemError(
                    "not attached to the packet network after %d s: check the antenna, the "
                    "SIM's data plan and the APN" % (timeout_ms // 1000)
                )
            self.sleep(1000)

    def sleep(self, ms):
        """Wait `ms` while still taking in URCs and downlinks (and feeding the watchdog)."""
        deadline = ticks_add(ticks_ms(), ms)
        while ticks_diff(deadline, ticks_ms()) > 0:
            self.at.poll()
            if self.at.idle:
                self.at.idle()
            sleep_ms(min(10, max(0, ticks_diff(deadline, ticks_ms()))))

    # ------------------------------------------------------------------ HTTP
    def bearer_open(self, apn):
        apn = "" if apn is None else apn
        if apn:
            quoted("apn", apn)
        self.at.cmd('AT+SAPBR=3,1,"CONTYPE","GPRS"')
        self.at.cmd('AT+SAPBR=3,1,"APN","%s"' % apn)
        try:
            self.at.cmd("AT+SAPBR=1,1", timeout=_BEARER_MS)
        except ATError as e:
            if e.code != 3:  # 3: already open
                raise
        self.bearer_up = True
        return self.bearer_ip()

    def bearer_ip(self):
        lines = self.at.cmd("AT+SAPBR=2,1", info=b"+SAPBR")
        if not lines:
            return None
        parts = lines[-1].split(b",")
        if len(parts) < 3:
            return None
        ip = parts[2].strip().strip(b'"').decode()
        octets = ip.split(".")
        if len(octets) == 4 and all(o.isdigit() for o in octets):  # 010.159.001.145 unpadded
            ip = ".".join(str(int(o)) for o in octets)
        return ip

    def http_post(self, url, body, content_type="application/x-www-form-urlencoded"):
        """POST `body`; return (status, response bytes). HTTPTERM always follows."""
        from firmware.http import post  # loaded only by the flows that use HTTP

        return post(self, url, body, content_type)

    # ------------------------------------------------------------------ MQTT
    def mqtt_connect(self, client_id, username, password, host, port, tls=True, keepalive=300, clean=True):
        """MCONFIG, (SSL)MIPSTART, MCONNECT the moment CONNECT OK arrives, MQTTMSGSET=0."""
        fields = (quoted("client_id", client_id), quoted("username", username), quoted("password", password))
        host = quoted("host", host)
        if not 30 <= keepalive <= 1200:
            raise ValueError("keepalive: %d is outside 30..1200 s" % keepalive)
        self.mqtt_connected = False
        # a CLOSED still queued belongs to the link being replaced (or to our own MIPCLOSE)
        self._events = [ev for ev in self._events if ev[0] != "closed"]
        self.at.cmd('AT+MCONFIG="%s","%s","%s"' % fields, label="AT+MCONFIG")
        start = "AT+SSLMIPSTART" if tls else "AT+MIPSTART"
        try:
            self.at.cmd(
                '%s="%s",%d' % (start, host, port),
                timeout=_CONNECT_MS,
                then=(b"CONNECT OK", b"ALREADY CONNECT", b"CONNECT FAIL"),
                abort=_MODULE_LOST,
            )
        except ATError:
            if self.mqtt_status() == 0:
                raise ConnectError("%s to %s:%d refused by the module" % (start, host, port))
            self.at.final = b"ALREADY CONNECT"  # a link is up: go on with MCONNECT
        if self.at.final.startswith(b"CONNECT FAIL"):
            state = b" ".join(self.at.lines).decode()  # e.g. "STATE: IP INITIAL": no bearer
            raise ConnectError("%s to %s:%d: CONNECT FAIL %s(network, DNS, TLS or bearer)" % (start, host, port, state + " " if state else ""))
        events = self.stats["events"]  # a link event from here on: this session is gone
        try:
            self.at.cmd(
                "AT+MCONNECT=%d,%d" % (1 if clean else 0, keepalive),
                then=(b"CONNACK OK",),
                timeout=_CONNACK_MS,
                abort=_LINK_LOST,
            )
        except ATError as e:
            if e.code == 767 and self.mqtt_status() == 1:
                log.info(_TAG, "MQTT session already up")
            elif e.after_ok or e.code is None:
                raise CredentialsRefused(
                    "the MQTT server refused the connection (CONNACK not accepted): check "
                    "ProductKey, DeviceName, DeviceSecret (or the token) and the sign method"
                )
            else:
                raise
        except ATAbort as e:
            raise LinkDown("link lost while connecting: %s" % e.line)
        self.at.cmd("AT+MQTTMSGSET=0")
        if self.stats["events"] != events:  # CLOSED (or worse) right after CONNACK OK
            raise LinkDown("link lost right after CONNACK: %s" % (self._events[-1][1] if self._events else "?"))
        self.mqtt_connected = True
        log.info(_TAG, "MQTT connected to %s:%d (%s)", host, port, "TLS" if tls else "TCP")

    def mqtt_subscribe(self, topic, qos=0):
        self._mqtt('AT+MSUB="%s",%d' % (quoted("topic", topic), self._qos(qos)), b"SUBACK")

    def mqtt_unsubscribe(self, topic):
        self._mqtt('AT+MUNSUB="%s"' % quoted("topic", topic), b"UNSUBACK")

    def mqtt_publish(self, topic, payload, qos=0):
        """Publish; returns after OK (QoS 0) or PUBACK (QoS 1)."""
        topic = quoted("topic", topic)
        qos = self._qos(qos)
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        if n > PAYLOAD_MAX:
            raise ValueError("payload: %d bytes is over the module's %d-byte limit" % (n, PAYLOAD_MAX))
        then = b"PUBACK" if qos else None
        text = not (b"\x00" in payload or b"\x1a" in payload or b"\x1b" in payload)
        if text:
            try:
                payload.decode()
            except UnicodeError:
                text = False
        body = escape(payload) if text else None
        if body is not None and len(body) <= MPUB_MAX:
            cmd = b"".join((b'AT+MPUB="', topic.encode(), b'",%d,0,"' % qos, body, b'"'))
            self._mqtt(cmd, then, label="AT+MPUB")
        else:
            if (self.version_number or 0) < MPUBEX_VERSION:
                raise ValueError(
                    "payload: %d bytes %s needs AT+MPUBEX (module firmware V%d or later), this "
                    "module is %s" % (n, "of binary data" if body is None else "escaped is too long for AT+MPUB and", MPUBEX_VERSION, self.version)
                )
            cmd = 'AT+MPUBEX="%s",%d,0,%d' % (topic, qos, n)
            self._mqtt(cmd, then, data=payload, label="AT+MPUBEX")
        self.stats["published"] += 1
        if qos:
            self.stats["acked"] += 1

    def _qos(self, qos):
        if qos not in (0, 1):
            raise ValueError("qos: %r is not 0 or 1 (Aliyun supports QoS 0 and 1)" % (qos,))
        return qos

    def _mqtt(self, cmd, then, data=None, label=None):
        if not self.mqtt_connected:
            raise LinkDown("MQTT is not connected")
        try:
            self.at.cmd(cmd, then=(then,) if then else None, data=data, label=label, timeout=_ACK_MS, abort=_LINK_LOST)
        except ATAbort as e:
            raise LinkDown("%s: link lost (%s)" % (e.cmd, e.line))

    def mqtt_status(self):
        """0 offline, 1 connected, 2 TCP up without an MQTT session."""
        lines = self.at.cmd("AT+MQTTSTATU", info=b"+MQTTSTATU")
        v = ints(lines[-1]) if lines else [None]
        return v[0] if v[0] is not None else 0

    def mqtt_disconnect(self):
        self.mqtt_connected = False
        for cmd in ("AT+MDISCONNECT", "AT+MIPCLOSE"):
            try:
                self.at.cmd(cmd)
            except ModemError as e:  # after CLOSED these may fail (767): nothing to close
                log.debug(_TAG, "%s: %s", cmd, e)

    # ------------------------------------------------------------------ events
    def poll(self):
        """Take in pending input, then hand queued downlinks and events to the handlers."""
        self.at.poll()
        self.deliver()

    def deliver(self):
        while self._events:
            name, detail = self._events.pop(0)
            if self.on_event:
                try:
                    self.on_event(name, detail)
                except Exception as e:
                    log.error(_TAG, "on_event(%s) failed: %r", name, e)
        while self._inbox:
            topic, payload = self._inbox.pop(0)
            if self.on_message is None:
                log.warn(_TAG, "downlink on %s (%d bytes) with no on_message handler", topic, len(payload))
                continue
            try:
                self.on_message(topic, payload)
            except Exception as e:
                log.error(_TAG, "on_message(%s) failed: %r", topic, e)

    def _event(self, name, line):
        self.stats["events"] += 1
        detail = line.decode()
        log.warn(_TAG, "link event %s: %s", name, detail)
        self._events.append((name, detail))

    def _on_msub(self, header, payload):
        if payload is None:  # cached mode notice (+MSUB: <slot>): MQTTMSGSET=0 was lost
            log.warn(_TAG, "cached downlink notice %r: downlinks are not pushed", header)
            return
        s = header.find(b'"')
        e = header.find(b'"', s + 1)
        if s >= 0 and e > s:
            topic = header[s + 1 : e]
        else:  # unquoted topic
            topic = header[header.find(b":") + 1 : header.rfind(b",")].strip()
        self.stats["downlinks"] += 1
        if len(self._inbox) >= _INBOX_MAX:
            old = self._inbox.pop(0)
            self.stats["downlinks_dropped"] += 1
            log.error(_TAG, "inbox full (%d): dropped the oldest downlink on %s; call poll() more often", _INBOX_MAX, old[0])
        self._inbox.append((topic.decode(), payload))

    def _on_closed(self, line, payload):
        self.mqtt_connected = False
        self._event("closed", line)

    def _on_pdp(self, line, payload):
        if b"DEACT" not in line:
            log.info(_TAG, "%s", line.decode())
            return
        self.mqtt_connected = False
        self.bearer_up = False
        self._event("pdp_deact", line)

    def _on_rdy(self, line, payload):
        self.mqtt_connected = False
        self.bearer_up = False
        self._event("reboot", line)

    def _on_cpin(self, line, payload):
        if b"READY" in line:
            if self._sim_lost:  # the SIM is back: the layer above may retry at once
                self._sim_lost = False
                self._event("sim_ready", line)
            return
        self._sim_lost = True
        self.mqtt_connected = False
        self._event("sim_removed", line)

    def _on_late(self, line, payload):
        log.debug(_TAG, "late reply %r", line)
