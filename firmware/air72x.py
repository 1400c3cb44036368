# The Air72x (Air724UG family) driver: typed calls over the AT engine. It owns what the
# module's commands mean (docs/at-dialect.md): bring-up, the HTTP bearer and POST,
# MQTT connect/subscribe/publish, downlinks, and link events. It knows nothing of Aliyun.
#
# Downlinks and link events are queued when they arrive (possibly in the middle of another
# command) and handed to on_message / on_event from poll() after every read, so a handler
# may itself send commands. While a command waits, downlinks queue against a byte budget
# (_INBOX_BYTES); when one wait receives more than that (the module's answer can be queued
# behind a whole burst), the oldest are handed to on_message from inside the wait instead
# of being dropped (counted in stats["early"]): a handler must then not send AT commands
# itself (Link.publish and Link.subscribe defer theirs; a direct one gets a ModemError).
from firmware import log
from firmware.at import AT, escape, ints, quoted, text
from firmware.errors import ATAbort, ATError, ATTimeout, ModemError
from firmware.port import const, ticks_add, ticks_diff

_TAG = "air72x"
# Module families: what differs between the Air72x generation and the Air780 series, as
# (what the version string holds, family, MQTT from version, AT+MPUBEX from version, SSL
# context of MQTT, of HTTP; 0: no verified TLS through AT+SSLCFG). Version numbers count
# per family (Air724UG V4018xx, Air780E V11xx, Air780EP V10xx), so the thresholds are too.
# Sources and the limits they give: docs/modules.md.
FAMILIES = (
    ("_Air72", "Air72x", 409, 907, 0, 0),
    ("_720U", "Air72x", 409, 907, 0, 0),
    ("_780E", "Air780", 0, 0, 88, 153),  # Air780E, EP, EG, EPV: the EC618 AT firmware
)
UNKNOWN = ("", "unknown", 0, 1 << 30, 0, 0)  # the conservative set: no MPUBEX, no TLS check
CA_FILE = "aliyun-ca.crt"  # the CA's name in the module's file system
MPUB_MAX = const(2348)  # longest quoted AT+MPUB message after escaping (manual, from V301826)
PAYLOAD_MAX = const(4100)  # longest payload AT+MPUBEX takes (1..4100 in the manual)
MSUB_MAX = const(4100)  # longest downlink a module delivers (+MSUB count; 1360 on Air724, 4100 EC618)
HTTPREAD_MAX = const(4100)  # longest HTTP answer read back (+HTTPREAD count; a 4 KB buffer)
TOPIC_MAX = const(128)  # longest topic (the official Aliyun device SDKs' limit)
_AT_TRIES = const(20)  # autobaud: upper-case AT this many times before giving up
_AT_MS = const(300)
_ATTACH_MS = const(60000)
_BEARER_MS = const(30000)
_CONNECT_MS = const(30000)  # MIPSTART/SSLMIPSTART until CONNECT OK
_CONNACK_MS = const(15000)
ACK_MS = const(15000)  # SUBACK / PUBACK
_INBOX_BYTES = const(16384)  # downlink bytes held while one command waits
_QUIET_MS = const(30)  # no downlink this long: a burst of them is over
_SIM_BUSY_MS = const(10000)  # SIM busy (+CME ERROR: 14) after boot: ask again for this long

# URCs that mean the module rebooted or lost its SIM: every command stops waiting
_MODULE_LOST = (b"RDY", b"+CPIN: SIM REMOVED", b"+CPIN: NOT INSERTED")
# ... and for MQTT commands, the link going down as well
_LINK_LOST = _MODULE_LOST + (b"CLOSED", b"+PDP: DEACT", b"+PDP DEACT", b"+CGEV: NW PDN DEACT", b"+SAPBR 1: DEACT")
# Boot and network chatter that real modules print unasked: known, and nobody's answer
_CHATTER = (b"^boot", b"+E_UTRAN", b"+NITZ", b"^MODE", b"SMS Ready", b"Call Ready", b"+CTZV",
            b"+CREG", b"+CEREG", b"+CGREG", b"+CSCON", b"^SIMST", b"+ZCONSTAT", b"+NO Service",
            b"^CARDMODE", b"+QIND", b"+UPGRADEIND")

def topic_name(topic, wild=False):
    """A topic the module and the platform take, as str; '+' and '#' only when `wild`
    (a subscription). TypeError / ValueError that name the problem."""
    t = quoted("topic", topic)
    if len(t) > TOPIC_MAX:
        raise ValueError("topic: %d characters, more than %d" % (len(t), TOPIC_MAX))
    if not wild and ("+" in t or "#" in t):
        raise ValueError("topic %s: '+' and '#' are wildcards, for subscriptions only" % t)
    return t


def payload_of(payload):
    """A payload as it may be kept until sent: bytes or str (sent as UTF-8); a bytearray or
    memoryview is copied (the caller may reuse it); TypeError for anything else."""
    if isinstance(payload, (bytes, str)):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError("payload: a %s is not bytes or str (json.dumps() it first)" % type(payload).__name__)


def qos_level(qos):
    if type(qos) is not int or qos not in (0, 1):  # True and 1.0 are not QoS levels
        raise ValueError("qos: %r is not 0 or 1 (Aliyun supports QoS 0 and 1)" % (qos,))
    return qos


def family(version):
    """The FAMILIES row of a version string (UNKNOWN when none matches)."""
    for row in FAMILIES:
        if row[0] in (version or ""):
            return row
    return UNKNOWN


def _version_number(version):
    i = version.find("_V")
    j = i + 2
    while j < len(version) and version[j].isdigit():
        j += 1
    return int(version[i + 2 : j]) if i >= 0 and j > i + 2 else None


class Air72x:
    def __init__(self, uart, rxbuf=None):
        self.at = AT(uart) if rxbuf is None else AT(uart, rxbuf)
        at = self.at
        at.counted(b"+MSUB", b"byte,", MSUB_MAX)
        at.counted(b"+HTTPREAD", b"\n", HTTPREAD_MAX)
        at.on(b"+MSUB", self._on_msub)
        at.on(b"CLOSED", self._on_closed)
        for p in (b"+PDP", b"+CGEV", b"+SAPBR"):
            at.on(p, self._on_pdp)
        at.on(b"RDY", self._on_rdy)
        at.on(b"+CPIN", self._on_cpin)
        at.on(b"PUBACK", self._on_puback)
        for p in (b"SUBACK", b"UNSUBACK", b"CONNACK", b"CONNECT OK", b"OK", b"+HTTPACTION"):
            at.on(p, self._on_late)
        for p in _CHATTER:
            at.on(p, self._on_chatter)
        at.aborts = _MODULE_LOST
        self.on_message = None  # handler(topic: str, payload: bytes)
        self.on_event = None  # handler(name: str, detail: str)
        self.version = None
        self.version_number = None
        self._warned = None  # the unknown module already named in the log
        self.ca_loaded = None  # the name of the CA the module holds since its last boot
        self.mqtt_connected = False
        self.bearer_up = False
        self._sim_lost = False
        self._inbox = []
        self._inbox_bytes = 0
        self.pubacks = 0  # PUBACKs that came as URCs (QoS 1 publishes sent with wait=False)
        self._dl_at = None  # ticks of the last downlink
        self._events = []
        self.stats = {"downlinks": 0, "downlinks_dropped": 0, "published": 0, "acked": 0, "events": 0, "chatter": 0, "early": 0}

    def __getattr__(self, name):
        """The sync API: modem.ready(...) runs ready_g(...) to its end with the engine's
        blocking wait (AT.run) and returns its value. Every method that sends a command is a
        generator (*_g: the link composes them, firmware/aio.py awaits them); this one door
        stands for all their sync names, costing no RAM per method."""
        if name[:1] == "_" or name[-2:] == "_g":
            raise AttributeError(name)
        try:
            g = getattr(self, name + "_g")
        except AttributeError:
            raise AttributeError(name)
        return lambda *args, **kw: self.at.run(g(*args, **kw))

    # ------------------------------------------------------------------ bring-up
    def start(self, attach_ms=_ATTACH_MS):
        """Autobaud, echo off, version check, SIM, signal, packet attach."""
        self.at.run(self.ready_g())
        self.at.run(self.wait_attach_g(attach_ms))

    def ready_g(self, tries=_AT_TRIES, flow=False):
        """Autobaud, echo off (it is back on after every restart), RTS/CTS flow control when
        `flow`, version check, SIM, signal: the module answers and can be used. Returns the
        rssi."""
        yield from self.autobaud_g(tries)
        yield from self.at.cmd_g("ATE0")
        if flow:
            yield from self.at.cmd_g("AT+IFC=2,2")  # the module stops sending while the board holds RTS
        yield from self.check_version_g()
        yield from self.check_sim_g()
        rssi, _ = yield from self.signal_g()
        log.info(_TAG, "module %s ready, signal %s", self.version, "unknown" if rssi == 99 else rssi)
        return rssi

    def autobaud_g(self, tries=_AT_TRIES):
        for _ in range(tries):
            try:
                yield from self.at.cmd_g("AT", timeout=_AT_MS)
                return
            except ATTimeout:
                pass
            except ATError:
                pass  # a half-trained line answers ERROR once: try again
            except ATAbort:
                pass  # RDY / +CPIN: the module is just coming up: ask again
        raise ModemError(
            "module does not answer AT (%d tries): check power, TX/RX wiring (crossed), "
            "common ground, level shifting and baud rate" % tries,
            "timeout",
        )

    def check_version_g(self):
        """The module's firmware version from its +CGMR line (or the bare line)."""
        lines = yield from self.at.cmd_g("AT+CGMR")
        line = _first(lines)
        for ln in lines:  # '+CGMR: "AirM2M_..."', or the bare text some builds print
            if ln.startswith(b"+CGMR"):
                line = ln[ln.find(b":") + 1 :]
                break
        version = text((line or b"").strip().strip(b'"')[:64])
        self.version = version
        self.version_number = number = _version_number(version)
        row = family(version)
        if row is UNKNOWN:
            if self._warned != version:
                self._warned = version
                log.warn(_TAG, "unknown module %s: using the conservative set (no AT+MPUBEX, "
                               "no TLS verification)", log.safe(version, 64))
        elif number is None or number < row[2]:
            raise ModemError(
                "module firmware %s is older than V%d: Aliyun needs V%d or later on %s modules, "
                "upgrade it with Luatools" % (log.safe(version, 64), row[2], row[2], row[1]), "version"
            )
        return version

    def family(self):
        """This module's FAMILIES row (from the version check_version() read)."""
        return family(self.version)

    def check_sim_g(self):
        """+CPIN: READY, or a "sim" ModemError. A SIM that is busy right after boot (+CME ERROR: 14,
        Air780 modules for a few seconds) is asked again every second for 10 s."""
        at = self.at
        deadline = ticks_add(at.ticks(), _SIM_BUSY_MS)
        while True:
            try:
                line = _first((yield from at.cmd_g("AT+CPIN?", info=b"+CPIN")))
                break
            except ATError as e:
                if e.code == 10:
                    raise ModemError("no SIM card (+CME ERROR: 10): insert a SIM with a data plan", "sim")
                if e.code != 14:
                    raise
                if ticks_diff(deadline, at.ticks()) <= 0:
                    raise ModemError("SIM still busy (+CME ERROR: 14) after %d s: check the SIM card" % (_SIM_BUSY_MS // 1000), "sim")
                yield from self.sleep_g(1000)
        state = text(line.split(b":", 1)[-1].strip()[:32]) if line else "?"
        if state.split(" ")[0] != "READY":  # "READY 0": the hot-plug form of some Air780E
            raise ModemError("SIM not ready: %s" % state, "sim")

    def signal_g(self):
        """(rssi 0..31 or 99 unknown, ber)."""
        v = ints(_first((yield from self.at.cmd_g("AT+CSQ", info=b"+CSQ"))) or b"")
        return (v[0], v[1]) if len(v) >= 2 and v[0] is not None and v[1] is not None else (99, 99)

    def attached_g(self):
        line = _first((yield from self.at.cmd_g("AT+CGATT?", info=b"+CGATT")))
        return line is not None and ints(line)[:1] == [1]

    def wait_attach_g(self, timeout_ms=_ATTACH_MS):
        at = self.at
        deadline = ticks_add(at.ticks(), timeout_ms)
        while not (yield from self.attached_g()):
            if ticks_diff(deadline, at.ticks()) <= 0:
                raise ModemError(
                    "not attached to the packet network after %d s: check the antenna, the "
                    "SIM's data plan and the APN" % (timeout_ms // 1000), "attach"
                )
            yield from self.sleep_g(1000)

    def sleep_g(self, ms):
        """Wait `ms` while still taking in URCs and downlinks (and feeding the watchdog)."""
        at = self.at
        deadline = ticks_add(at.ticks(), ms)
        while True:
            left = ticks_diff(deadline, at.ticks())
            if left <= 0:
                break
            self.poll()
            yield min(10, left)  # the wait feeds the watchdog

    # ------------------------------------------------------------------ HTTP
    def bearer_open_g(self, apn):
        apn = "" if apn is None else apn
        if apn:
            quoted("apn", apn)
        yield from self.at.cmd_g('AT+SAPBR=3,1,"CONTYPE","GPRS"')
        yield from self.at.cmd_g('AT+SAPBR=3,1,"APN","%s"' % apn)
        try:
            yield from self.at.cmd_g("AT+SAPBR=1,1", timeout=_BEARER_MS)
        except ATError as e:
            if e.code != 3:  # 3: already open
                raise
        self.bearer_up = True
        return (yield from self.bearer_ip_g())

    def bearer_ip_g(self):
        line = _first((yield from self.at.cmd_g("AT+SAPBR=2,1", info=b"+SAPBR")))
        if line is None:
            return None
        parts = line.split(b",")
        if len(parts) < 3:
            return None
        ip = text(parts[2].strip().strip(b'"')[:40])
        octets = ip.split(".")
        if len(octets) == 4 and all(o.isdigit() for o in octets):  # 010.159.001.145 unpadded
            ip = ".".join(str(int(o)) for o in octets)
        return ip

    def http_post_g(self, url, body, content_type="application/x-www-form-urlencoded"):
        """POST `body`; return (status, response bytes). HTTPTERM always follows."""
        from firmware.http import post_g  # loaded only by the flows that use HTTP

        return (yield from post_g(self, url, body, content_type))

    # ------------------------------------------------------------------ TLS
    def load_ca_g(self, name, pem):
        """Give the module the CA that its MQTT and HTTP TLS links verify the server with
        (AT+FSWRITE into its file system, AT+SSLCFG "cacert" and "seclevel" 1 on both SSL
        contexts), once per module boot. False: this family has no such commands (the
        Air72x AT firmware, an unknown module): the caller says so once and goes on."""
        row = self.family()
        if not row[4]:
            return False
        at = self.at
        try:
            yield from at.cmd_g('AT+FSDEL="%s"' % CA_FILE)  # a longer old file would leave its tail
        except ATError:
            pass  # there was none
        yield from at.cmd_g('AT+FSCREATE="%s"' % CA_FILE)
        yield from at.cmd_g('AT+FSWRITE="%s",0,%d,10' % (CA_FILE, len(pem)), data=pem, timeout=15000)
        for ctx in (row[4], row[5]):
            yield from at.cmd_g('AT+SSLCFG="cacert",%d,"%s"' % (ctx, CA_FILE))
            yield from at.cmd_g('AT+SSLCFG="seclevel",%d,1' % ctx)
        self.ca_loaded = name
        log.info(_TAG, "TLS: the module verifies servers against %s (%d bytes)", name, len(pem))
        return True

    # ------------------------------------------------------------------ MQTT
    def mqtt_connect_g(self, client_id, username, password, host, port, tls=True, keepalive=300, clean=True):
        """MCONFIG, (SSL)MIPSTART, MCONNECT the moment CONNECT OK arrives, MQTTMSGSET=0.
        The caller closes what the module may still hold first (mqtt_disconnect)."""
        fields = (quoted("client_id", client_id), quoted("username", username), quoted("password", password))
        host = quoted("host", host)
        if not 30 <= keepalive <= 1200:
            raise ValueError("keepalive: %d is outside 30..1200 s" % keepalive)
        self.mqtt_connected = False
        # a CLOSED still queued belongs to the link being replaced (or to our own MIPCLOSE)
        self._events = [ev for ev in self._events if ev[0] != "closed"]
        yield from self.at.cmd_g('AT+MCONFIG="%s","%s","%s"' % fields, label="AT+MCONFIG")
        start = "AT+SSLMIPSTART" if tls else "AT+MIPSTART"
        try:
            yield from self.at.cmd_g(
                '%s="%s",%d' % (start, host, port),
                timeout=_CONNECT_MS,
                then=(b"CONNECT OK", b"ALREADY CONNECT", b"CONNECT FAIL"),
                abort=_MODULE_LOST,
            )
        except ATError:
            if (yield from self.mqtt_status_g()) == 0:
                raise ModemError("%s to %s:%d refused by the module" % (start, host, port), "connect")
            self.at.final = b"ALREADY CONNECT"  # a link is up: go on with MCONNECT
        if self.at.final.startswith(b"CONNECT FAIL"):
            state = text(b" ".join(self.at.lines)[:40])  # e.g. "STATE: IP INITIAL": no bearer
            why = "network, DNS, TLS or bearer"
            if tls and self.ca_loaded:
                why += "; or the server's certificate did not verify against " + self.ca_loaded
            raise ModemError("%s to %s:%d: CONNECT FAIL %s(%s)" % (start, host, port, state + " " if state else "", why), "connect")
        # a link event from here on (the engine stops at CONNECT OK, so a CLOSED in the same
        # read comes after this): the new connection is gone
        events = self.stats["events"]
        self.at.poll()
        self._gone(events, "right after CONNECT OK")
        try:
            yield from self.at.cmd_g(
                "AT+MCONNECT=%d,%d" % (1 if clean else 0, keepalive),
                then=(b"CONNACK OK",),
                timeout=_CONNACK_MS,
                abort=_LINK_LOST,
            )
        except ATError as e:
            self._gone(events, "while connecting")
            if e.after_ok or e.code is None:
                raise ModemError(
                    "the MQTT server refused the connection (CONNACK not accepted): check "
                    "ProductKey, DeviceName, DeviceSecret (or the token) and the sign method", "refused"
                )
            if e.code == 767:  # not a session of ours to adopt: close it and start again
                raise ModemError("MCONNECT refused (+CME ERROR: 767): the module holds another session or lost the link", "link")
            raise
        except ATAbort as e:
            raise ModemError("link lost while connecting: %s" % e.line, "link")
        yield from self.at.cmd_g("AT+MQTTMSGSET=0")
        self._gone(events, "right after CONNACK")
        self.mqtt_connected = True
        log.info(_TAG, "MQTT connected to %s:%d (%s)", host, port, "TLS" if tls else "TCP")

    def _gone(self, events, when):
        if self.stats["events"] != events:  # CLOSED (or worse) since the connection began
            raise ModemError("link lost %s: %s" % (when, self._events[-1][1] if self._events else "?"), "link")

    def mqtt_subscribe_g(self, topic, qos=0):
        yield from self._mqtt_g('AT+MSUB="%s",%d' % (topic_name(topic, True), qos_level(qos)), b"SUBACK")

    def mqtt_unsubscribe_g(self, topic):
        yield from self._mqtt_g('AT+MUNSUB="%s"' % topic_name(topic, True), b"UNSUBACK")

    def check_publish(self, topic, payload, qos=0):
        """(topic, payload bytes) as mqtt_publish() takes them, or TypeError / ValueError
        naming what is wrong: what the app hands in is checked at the door."""
        topic = topic_name(topic)
        qos_level(qos)
        payload = payload_of(payload)
        n = len(payload)
        if n * 4 > PAYLOAD_MAX and isinstance(payload, str):
            n = len(payload.encode())  # only a long text is measured in bytes
        if n > PAYLOAD_MAX:
            raise ValueError("payload: %d bytes is over the module's %d-byte limit" % (n, PAYLOAD_MAX))
        return topic, payload

    def mqtt_publish_g(self, topic, payload, qos=0, wait=True, checked=False):
        """Publish; returns after OK (QoS 0) or PUBACK (QoS 1). wait=False: a QoS 1 publish
        returns at OK too, and its PUBACK counts in self.pubacks when it comes (the module
        takes the next QoS 1 message only after it; the link waits without blocking, so a
        burst of downlinks is delivered meanwhile instead of piling up). A payload the quoted
        AT+MPUB cannot carry as it is (a control byte the module's line editing would act
        on, bytes that are not UTF-8, or too long once escaped) goes through AT+MPUBEX.
        checked: topic and payload are what check_publish() returned (the link checks once)."""
        if not checked:
            topic, payload = self.check_publish(topic, payload, qos)
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        then = b"PUBACK" if qos and wait else None
        body = escape(payload)
        text_ok = len(body) <= MPUB_MAX and (not body or min(body) >= 32) and b"\x7f" not in body
        if text_ok:
            try:
                payload.decode()
            except UnicodeError:
                text_ok = False
        if text_ok:
            cmd = b"".join((b'AT+MPUB="', topic.encode(), b'",%d,0,"' % qos, body, b'"'))
            yield from self._mqtt_g(cmd, then, label="AT+MPUB")
        else:
            body = None
            since = self.family()[3]
            if (self.version_number or 0) < since:
                raise ValueError(
                    "payload: %d bytes of binary data or control characters, or too long once "
                    "escaped for AT+MPUB, needs AT+MPUBEX (%s), this module is %s"
                    % (n, "module firmware V%d or later" % since if since < 1 << 30 else "a known module", log.safe(self.version, 64))
                )
            cmd = 'AT+MPUBEX="%s",%d,0,%d' % (topic, qos, n)
            yield from self._mqtt_g(cmd, then, data=payload, label="AT+MPUBEX")
        self.stats["published"] += 1
        if then:
            self.stats["acked"] += 1

    def _mqtt_g(self, cmd, then, data=None, label=None):
        if not self.mqtt_connected:
            raise ModemError("MQTT is not connected", "link")
        try:
            yield from self.at.cmd_g(cmd, then=(then,) if then else None, data=data, label=label, timeout=ACK_MS, abort=_LINK_LOST)
        except ATAbort as e:
            raise ModemError("%s: link lost (%s)" % (e.cmd, e.line), "link")

    def busy(self):
        """No command can be sent now (one waits, or this is a handler inside the receive
        path)."""
        return self.at.busy()

    def receiving(self):
        """A downlink came within the last _QUIET_MS: the module may be in a burst of them.
        A command sent now would have its answer queued behind all of them, and the whole
        burst would land inside that one wait."""
        return self._dl_at is not None and 0 <= ticks_diff(self.at.ticks(), self._dl_at) < _QUIET_MS

    def mqtt_status_g(self):
        """0 offline, 1 connected, 2 TCP up without an MQTT session."""
        v = ints(_first((yield from self.at.cmd_g("AT+MQTTSTATU", info=b"+MQTTSTATU"))) or b"")
        return v[0] if v and v[0] is not None else 0

    def mqtt_disconnect_g(self):
        self.mqtt_connected = False
        for cmd in ("AT+MDISCONNECT", "AT+MIPCLOSE"):
            try:
                yield from self.at.cmd_g(cmd)
            except ModemError as e:  # after CLOSED these may fail (767): nothing to close
                log.debug(_TAG, "%s: %s", cmd, e)

    # ------------------------------------------------------------------ events
    def poll(self):
        """Take in pending input and hand downlinks and events to the handlers after every
        read, so a burst never waits in the inbox for the whole poll."""
        self.at.poll(self.deliver)
        self.deliver()

    def deliver(self):
        if self.at._active:
            return  # inside a command (a handler that publishes): the caller's poll delivers
        while self._events:
            name, detail = self._events.pop(0)
            if self.on_event:
                try:
                    self.on_event(name, detail)
                except Exception as e:
                    log.error(_TAG, "on_event(%s) failed: %s", name, log.err(e))
        while self._inbox:
            topic, payload = self._inbox.pop(0)
            self._inbox_bytes -= len(payload)
            self._hand(topic, payload)

    def _hand(self, topic, payload):
        if self.on_message is None:
            self.stats["downlinks_dropped"] += 1
            log.warn(_TAG, "downlink on %s (%d bytes) with no on_message handler", topic, len(payload))
            return
        try:
            self.on_message(topic, payload)
        except Exception as e:
            log.error(_TAG, "on_message(%s) failed: %s", topic, log.err(e))

    def _event(self, name, line):
        self.stats["events"] += 1
        detail = text(line[:60])
        log.warn(_TAG, "link event %s: %s", name, detail)
        self._events.append((name, detail))

    def _on_msub(self, header, payload):
        if payload is None:
            rest = header[header.find(b":") + 1 :].strip()
            if rest.isdigit():  # cached mode notice (+MSUB: <slot>): MQTTMSGSET=0 was lost
                log.warn(_TAG, "cached downlink notice %s: downlinks are not pushed", text(rest))
            else:  # a header whose count could not be read: only this line is lost
                self.at.stats["discarded"] += 1
                log.warn(_TAG, "downlink header without a count dropped")
            return
        s = header.find(b'"')
        e = header.find(b'"', s + 1)
        if s >= 0 and e > s:
            topic = header[s + 1 : e]
        else:  # unquoted topic
            topic = header[header.find(b":") + 1 : header.rfind(b",")].strip()
        self.stats["downlinks"] += 1
        self._dl_at = self.at.ticks()
        self._inbox_bytes += len(payload)
        self._inbox.append((text(topic), payload))
        while self._inbox_bytes > _INBOX_BYTES and len(self._inbox) > 1:
            old = self._inbox.pop(0)  # one wait received more than the budget: hand it over now
            self._inbox_bytes -= len(old[1])
            self.stats["early"] += 1
            self._hand(old[0], old[1])

    def _on_closed(self, line, payload):
        self.mqtt_connected = False
        self._event("closed", line)

    def _on_pdp(self, line, payload):
        if b"DEACT" not in line:
            log.info(_TAG, "%s", text(line[:60]))
            return
        self.mqtt_connected = False
        self.bearer_up = False
        self._event("pdp_deact", line)

    def _on_rdy(self, line, payload):
        self.mqtt_connected = False
        self.bearer_up = False
        self.ca_loaded = None  # a restarted module forgets its SSL settings
        self._event("reboot", line)

    def _on_cpin(self, line, payload):
        if b"READY" in line and b"NOT READY" not in line:
            if self._sim_lost:  # the SIM is back: the layer above may retry at once
                self._sim_lost = False
                self._event("sim_ready", line)
            return
        if b"NOT READY" in line:  # the SIM is still coming up after boot
            return
        self._sim_lost = True
        self.mqtt_connected = False
        self._event("sim_removed", line)

    def _on_chatter(self, line, payload):
        self.stats["chatter"] += 1
        if line.startswith(b"^boot") and b"RDY" in line:  # the boot banner ran into RDY
            self._on_rdy(b"RDY", None)
            return
        log.debug(_TAG, "module says %s", text(line[:60]))

    def _on_puback(self, line, payload):
        self.pubacks += 1

    def _on_late(self, line, payload):
        log.debug(_TAG, "late reply %s", text(line[:40]))


def _first(lines):
    """The command's own information line (the engine keeps only lines with its prefix)."""
    return lines[0] if lines else None
