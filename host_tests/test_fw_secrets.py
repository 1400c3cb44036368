# No secret ever leaves the device: the redaction rule of firmware/log.py, checked end to end.
# Many flows run against the scripted UART (the real driver, the link, auth, registration,
# diag, the thing model, NTP, config.json) while everything they produce is captured: every
# log line (at DEBUG), every exception's str() and repr() (and its context and attributes),
# everything diag prints, and every byte written to the UART except what must carry a
# credential (the AT+MCONFIG command, the body after AT+HTTPDATA). The capture is then
# scanned for each secret (DeviceSecret, ProductSecret, a registered DeviceSecret, the
# iotToken, the direct flow's MQTT password) as text, as lowercase hex of its bytes and as
# base64, whole and as every 12-character window, case-insensitively. The secrets are
# random strings, so a window cannot match anything else by chance. The scanner's own test
# plants secrets and must find them. Runs under CPython and MicroPython.
import json
import os
from binascii import b2a_base64, hexlify

from fwtest import StubUART, capture_log, msub, release_log

from firmware import aliyun, auth, config, diag, log, ntp, register
from firmware.air72x import Air72x
from firmware.aliyun import Topics
from firmware.link import AUTH, MODULE, MQTT, UP, Link
from firmware.port import ticks_ms
from firmware.thing import Thing
from firmware.errors import CloudError, ModemError

PK, DN = "a1ScanPk7Qz", "scan-device-3"
DS = "x8vLIY813sMk5Qn96nartjAyXc25Laxw"  # DeviceSecret in config.json
PS = "6DzPBhjEo73t32EBPln7tq0VGlX4iJeH"  # ProductSecret
NEW_DS = "lIJtYlCozonqy5A00QyUZ4UROJ1wDIGd"  # the DeviceSecret a registration hands out
TOKEN = "21593348da3871d7ca8edbf37a5e425e"  # iotToken of the "http" flow
IOT_ID = "scanIotId0001"
RND = "0123456789abcdef"  # registration's random (register._random, patched)
NWL_CID = "Qm7RdWx2pLk9Vb4TzHs8Ue3Jn6Cy1Fa5"  # the clientId a registration without pre-registration hands out
NWL_TOKEN = "f4Kp9zLq2Wm7Xc3Vb8Nd1Rt6Ys5Gh0Ja"  # ... and its deviceToken
WINDOW = 12
OK = b"\r\nOK\r\n"
V409 = b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"'
V308 = b'+CGMR: "AirM2M_Air724UG_V308_LTE_AT"'
CONNACK_OK = b"\r\nCONNACK OK\r\n"
AUTH_PATH = "/auth/devicename"
REG_PATH = "/auth/register/device"


def cfg(**kw):
    c = {"product_key": PK, "device_name": DN, "device_secret": DS, "product_secret": PS,
         "backoff_min_ms": 10, "backoff_max_ms": 20, "backoff_refused_ms": 30}
    c.update(kw)
    if c.get("device_secret") is None:
        c.pop("device_secret")
    return config.check(c)


def password():
    """The direct flow's MQTT password for cfg() (the same sign on every connect)."""
    return aliyun.credentials(None, cfg())[2]


def secrets():
    return [("DeviceSecret", DS), ("ProductSecret", PS), ("registered DeviceSecret", NEW_DS),
            ("iotToken", TOKEN), ("MQTT password", password()), ("deviceToken", NWL_TOKEN),
            ("regnwl clientId", NWL_CID), ("MQTT registration password", reg_password())]


def reg_password():
    """The password of an MQTT registration request for cfg() (register.mqtt_request)."""
    return register.mqtt_request(cfg(device_secret=None, register="mqtt_nwl"), RND)[2]


# ---------------------------------------------------------------------- the scanner
def forms(secret):
    raw = secret.encode()
    return [secret, hexlify(raw).decode(), b2a_base64(raw).decode().strip()]


def leaks(text, named):
    """[(name, form found)] for every secret whose text, hex or base64 (or any WINDOW of
    those) occurs in `text`, case-insensitively."""
    low = text.lower()
    found = []
    for name, s in named:
        for f in forms(s):
            f = f.lower()
            for i in range(len(f) - WINDOW + 1):
                if f[i : i + WINDOW] in low:
                    found.append((name, f[i : i + WINDOW]))
                    break
    return found


def as_text(b):
    try:
        return bytes(b).decode()
    except UnicodeError:
        return "".join(chr(c) for c in b)


def split_writes(written):
    """(scanned bytes, [carried]): what the firmware wrote to the UART, minus the writes
    that must carry a credential: an AT+MCONFIG command, the body after AT+HTTPDATA."""
    w = bytes(written)
    scanned, carried = [], []
    i = 0
    while i < len(w):
        j = w.find(b"\r", i)
        j = len(w) if j < 0 else j + 1
        line = w[i:j]
        i = j
        if line.startswith(b"AT+MCONFIG="):
            carried.append(line)
            continue
        scanned.append(line)
        if line.startswith(b"AT+HTTPDATA="):
            n = int(line[12 : line.find(b",")].decode())
            carried.append(w[i : i + n])
            i += n
    return b"".join(scanned), carried


class Capture:
    """Everything a flow makes visible: log lines (DEBUG and up), printed lines, errors,
    and the UART writes of every modem made through it."""

    def __init__(self):
        self.log = capture_log()
        self._level = log.level
        log.level = log.DEBUG
        self.printed = []
        self.errors = []
        self.uarts = []
        self.closed = False

    def out(self, line):
        self.printed.append(str(line))

    def modem(self, script, strict=True):
        uart = StubUART(script, strict=strict)
        self.uarts.append(uart)
        return uart, Air72x(uart)

    def exc(self, e):
        depth = 0
        while e is not None and depth < 4:
            self.errors.append(str(e))
            self.errors.append(repr(e))
            for a in ("cmd", "line", "code", "status"):
                if hasattr(e, a):
                    self.errors.append(str(getattr(e, a)))
            e = getattr(e, "__context__", None) or getattr(e, "__cause__", None)
            depth += 1

    def call(self, fn, *args, **kw):
        """fn(...)'s result, or the exception it raised (captured)."""
        try:
            return fn(*args, **kw)
        except Exception as e:
            self.exc(e)
            return e

    def close(self):
        if not self.closed:
            release_log()
            log.level = self._level
            self.closed = True

    def carried(self):
        out = []
        for u in self.uarts:
            out.extend(split_writes(u.written)[1])
        return out

    def text(self):
        parts = self.log.lines + self.printed + self.errors
        for u in self.uarts:
            parts.append(as_text(split_writes(u.written)[0]))
        return "\n".join(parts)

    def check(self, named=None):
        """Fail if any secret shows anywhere in the capture."""
        self.close()
        text = self.text()
        found = leaks(text, named or secrets())
        assert not found, "secret leaked: %r\n--- capture:\n%s" % (found, text)
        return text


def scan(flow):
    """Run flow(cap) with a fresh capture, then scan what it captured."""
    cap = Capture()
    try:
        flow(cap)
    finally:
        cap.close()
    return cap.check()


# ---------------------------------------------------------------------- scripts
def reply(*lines):
    return b"".join(b"\r\n" + x + b"\r\n" for x in lines) + OK


def module_script(version=V409, echo=b""):
    s = [(b"AT\r", OK), (b"ATE0\r", OK), (b"AT+CGMR\r", echo + reply(version))]
    if version is V409:
        s += [(b"AT+CPIN?\r", reply(b"+CPIN: READY")), (b"AT+CSQ\r", reply(b"+CSQ: 20,99"))]
    return s


BEARER = [
    (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
    (b'AT+SAPBR=3,1,"APN","CMIIOT"\r', OK),
    (b"AT+SAPBR=1,1\r", OK),
    (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
]
ATTACH = [(b"AT+CGATT?\r", reply(b"+CGATT: 1"))] + BEARER


def mconfig(cid, user, pw):
    return ('AT+MCONFIG="%s","%s","%s"\r' % (cid, user, pw)).encode()


def direct():
    """(cid, user, password, host) of the direct flow for cfg()."""
    cid, user, pw, host, _ = aliyun.credentials(None, cfg())
    return cid, user, pw, host


def token_creds():
    return aliyun.client_id(cfg()), IOT_ID, TOKEN, aliyun.mqtt_host(cfg())


def mqtt_script(creds, connack=CONNACK_OK, subscribe=True):
    cid, user, pw, host = creds
    s = [
        (mconfig(cid, user, pw), OK),
        (('AT+SSLMIPSTART="%s",1883\r' % host).encode(), OK + b"\r\nCONNECT OK\r\n"),
        (b"AT+MCONNECT=1,300\r", OK + connack),
    ]
    if connack is CONNACK_OK:
        s.append((b"AT+MQTTMSGSET=0\r", OK))
        if subscribe:
            s.append((('AT+MSUB="/%s/%s/user/get",0\r' % (PK, DN)).encode(), OK + b"\r\nSUBACK\r\n"))
    return s


def link_mqtt(creds, connack=CONNACK_OK):
    """The link's MQTT phase: it first closes what the module may hold from before."""
    return [(b"AT+MDISCONNECT\r", OK), (b"AT+MIPCLOSE\r", OK)] + mqtt_script(creds, connack)


def auth_body():
    c = cfg()
    return (auth.auth_form(PK, DN, DS, aliyun.client_id(c), c["sign_method"]) + "&resources=mqtt").encode()


def reg_body():
    return auth.register_form(PK, DN, PS, RND, "hmacsha256").encode()


def http_script(path, body, answer, status=200):
    return [
        (b"AT+HTTPINIT\r", OK),
        (('AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com%s"\r' % path).encode(), OK),
        (b'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"\r', OK),
        (b"AT+HTTPDATA=%d,20000\r" % len(body), b"\r\nDOWNLOAD\r\n"),
        (body, OK),
        (b"AT+HTTPACTION=1\r", OK + b"\r\n+HTTPACTION: 1,%d,%d\r\n" % (status, len(answer))),
        (b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: %d\r\n" % len(answer) + answer + OK),
        (b"AT+HTTPTERM\r", OK),
    ]


def token_answer():
    return json.dumps({"code": 200, "data": {"iotId": IOT_ID, "iotToken": TOKEN}, "message": "success"}).encode()


def reg_answer(ds=NEW_DS):
    return json.dumps({"code": 200, "data": {"productKey": PK, "deviceName": DN, "deviceSecret": ds},
                       "message": "success"}).encode()


def echo_of_mconfig():
    """A late echo of the direct flow's AT+MCONFIG, as a module with echo on prints it."""
    return mconfig(*direct()[:3]) + b"\r\n"


def make_link(cap, script, **kw):
    uart, m = cap.modem(script)
    link = Link(m, cfg(**kw), Topics(PK, DN))
    return uart, m, link


def drive(link, steps):
    """`steps` link phases, each at once (no backoff waits)."""
    for _ in range(steps):
        link._next = link.ticks()
        link.step()


def tmpdir():
    base = "/tmp/fwtest-secrets-%d" % ticks_ms()
    n = 0
    while True:
        try:
            os.mkdir("%s-%d" % (base, n))
            return "%s-%d" % (base, n)
        except OSError:
            n += 1


def rmtree(d):
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    os.rmdir(d)


# ---------------------------------------------------------------------- the scanner itself
def test_scanner_finds_a_planted_secret():
    named = secrets()
    for name, s in named:
        raw = s.encode()
        plants = [
            s,  # the text
            s[7 : 7 + WINDOW],  # any 12 characters of it
            "x" + s[20:] + "y",  # its tail
            hexlify(raw).decode(),  # hex of its bytes
            hexlify(raw).decode()[30 : 30 + WINDOW].upper(),  # part of it, upper case
            b2a_base64(raw).decode().strip(),  # base64
            b2a_base64(raw).decode()[9 : 9 + WINDOW],
            s.lower(),
        ]
        for p in plants:
            found = leaks("2026-01-01 00:00:00 W link: something %s happened" % p, named)
            assert [f for f in found if f[0] == name], (name, p)
    # what the flows legitimately show does not match by chance
    clean = "AirM2M_Air724UG_V409_LTE_AT 866714043075174 %s %s %s 10.159.1.145" % (PK, DN, IOT_ID)
    assert leaks(clean, named) == []
    assert leaks(s[: WINDOW - 1], named) == []  # 11 characters of a secret are not a window


def test_scanner_excludes_only_the_writes_that_carry_credentials():
    w = b'AT+CSQ\rAT+MCONFIG="c","u","%s"\rAT+HTTPDATA=5,20000\r%sAT+HTTPTERM\r' % (TOKEN.encode(), b"sign=")
    scanned, carried = split_writes(w)
    assert scanned == b"AT+CSQ\rAT+HTTPDATA=5,20000\rAT+HTTPTERM\r"
    assert carried == [b'AT+MCONFIG="c","u","%s"\r' % TOKEN.encode(), b"sign="]
    # a secret written in any other command is found
    cap = Capture()
    uart, m = cap.modem([(b'AT+X="%s"\r' % DS.encode(), OK)])
    m.at.cmd('AT+X="%s"' % DS)
    failed = False
    try:
        cap.check()
    except AssertionError:
        failed = True
    assert failed, "a secret written to the UART was not found"


def test_capture_sees_log_lines_errors_and_printed_lines():
    for plant in ("log", "error", "print"):
        cap = Capture()
        if plant == "log":
            log.debug("x", "secret %s", TOKEN)
        elif plant == "error":
            cap.exc(ModemError("wrapped %s" % PS[3:20]))
        else:
            cap.out("shown " + hexlify(NEW_DS.encode()).decode())
        failed = False
        try:
            cap.check()
        except AssertionError:
            failed = True
        assert failed, plant


# ---------------------------------------------------------------------- log.safe / err
def test_safe_keeps_short_plain_text_and_hides_secret_looking_text():
    for keep in ("bad params", "AirM2M_Air724UG_V409_LTE_AT", "42", "request auth error.",
                 "check DeviceSecret and ProductSecret"):
        assert log.safe(keep, 60) == keep, keep
    for hide in (DS, "id " + TOKEN, b2a_base64(DS.encode()).decode().strip(), "a" * 41, "x\x00y",
                 b"\xff\xfe", "caf\u00e9"):
        shown = log.safe(hide)
        assert "not shown" in shown and not leaks(shown, secrets()), (hide, shown)
    assert log.safe(None) == "None" and log.safe(6289) == "6289"
    e = UnicodeError("bytes " + DS)
    assert log.err(e).startswith("UnicodeError: (") and DS not in log.err(e)


def test_a_bad_log_format_does_not_show_its_arguments():
    cap = Capture()
    log.info("t", "%d and %d", DS)  # wrong count and type: the line is still written
    log.info("t", "%s", "fine")
    text = cap.check()
    assert "bad log format" in text and "fine" in text


# ---------------------------------------------------------------------- mqtt
def test_mqtt_connect_ok():
    def flow(cap):
        uart, m, link = make_link(cap, module_script() + ATTACH + link_mqtt(direct()))
        drive(link, 3)
        assert link.state == UP and uart.done() and m.mqtt_connected
        link.log_stats()
        assert [c for c in cap.carried() if password().encode() in c], "the password went to MCONFIG"

    scan(flow)


def test_connack_refused():
    def flow(cap):
        script = module_script() + ATTACH + link_mqtt(direct(), connack=b"\r\nERROR\r\n")
        uart, m, link = make_link(cap, script)
        drive(link, 3)
        assert uart.done() and link.state == MQTT and link.counters["faults"] == {"refused": 1}

    scan(flow)


# ---------------------------------------------------------------------- http flow
def test_http_flow_200_token():
    def flow(cap):
        script = module_script() + ATTACH + http_script(AUTH_PATH, auth_body(), token_answer()) + link_mqtt(token_creds())
        uart, m, link = make_link(cap, script, auth="http")
        drive(link, 4)
        assert link.state == UP and uart.done() and link.counters["tokens"] == 1
        assert [c for c in cap.carried() if TOKEN.encode() in c], "the token went to MCONFIG"
        # diag's report of this running link (it holds the token)
        uart.script.extend([
            (b"AT\r", OK),
            (b"AT+CGMR\r", reply(V409)),
            (b"AT+CGSN\r", reply(b"866714043075174")),
            (b"AT+ICCID\r", reply(b"+ICCID: 89860425102180123456")),
            (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
            (b"AT+CSQ\r", reply(b"+CSQ: 20,99")),
            (b"AT+CREG?\r", reply(b"+CREG: 0,1")),
            (b"AT+CEREG?\r", reply(b"+CEREG: 0,1")),
            (b"AT+CGATT?\r", reply(b"+CGATT: 1")),
            (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
            (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :1")),
        ])
        diag.report(out=cap.out, modem=m, cfg=link.cfg, link=link)
        assert uart.done() and [x for x in cap.printed if "device_secret" in x and "****" in x]
        # the module printing the token back (AT+MCONFIG? typed at the REPL) is masked
        uart.script.append((b"AT+MCONFIG?\r", reply(('+MCONFIG: "c","%s","%s"' % (IOT_ID, TOKEN)).encode())))
        diag.at("AT+MCONFIG?", out=cap.out, modem=m, cfg=link.cfg, link=link)
        assert uart.done()

    scan(flow)


def test_http_401():
    said = json.dumps({"code": 401, "data": {}, "message": "request auth error: sign of %s" % DS}).encode()
    for status in (200, 401):
        def flow(cap):
            uart, m = cap.modem(http_script(AUTH_PATH, auth_body(), said, status))
            e = cap.call(auth.http_auth, m, cfg(auth="http"))
            assert isinstance(e, CloudError) and e.code == 401 and uart.done()
            # the same answer through the link: the auth fault, and the long backoff
            script = module_script() + ATTACH + http_script(AUTH_PATH, auth_body(), said, status)
            uart, m, link = make_link(cap, script, auth="http")
            drive(link, 3)
            assert uart.done() and link.state == AUTH and link.counters["faults"] == {"auth": 1}

        scan(flow)


UNREADABLE_AUTH = [
    b'{"code":200,"data":{"iotId":"%s","iotToken":"%s"' % (IOT_ID.encode(), TOKEN.encode()),  # cut short
    b'\xff{"code":200,"data":{"iotId":"i","iotToken":"%s"}}' % TOKEN.encode(),  # not UTF-8
    b'{"code":"%s","data":{}}' % TOKEN.encode(),  # the code is not a number
    b'{"code":200,"data":{"iotToken":"%s"}}' % TOKEN.encode(),  # no iotId
    b'{"code":200,"data":{"iotId":"i","iotToken":["%s"]}}' % TOKEN.encode(),  # not text
    b'["%s"]' % TOKEN.encode(),  # not an object
    b"<html>%s</html>" % DS.encode(),
    b'{"code":200,"data":"%s"}' % TOKEN.encode(),  # data not an object
    b'{"code":200,"data":{"iotId":"i","iotToken":"t","resources":"%s"}}' % TOKEN.encode(),
]


def test_unreadable_auth_reply_containing_the_secret():
    for answer in UNREADABLE_AUTH:
        def flow(cap):
            uart, m = cap.modem(http_script(AUTH_PATH, auth_body(), answer))
            e = cap.call(auth.http_auth, m, cfg(auth="http"))
            if answer is UNREADABLE_AUTH[-1]:  # readable after all: resources are optional
                assert e == ("i", "t", None, None), e
            else:
                assert isinstance(e, CloudError), (answer, e)
            assert uart.done()

        scan(flow)

    def through_link(cap):
        script = module_script() + ATTACH + http_script(AUTH_PATH, auth_body(), UNREADABLE_AUTH[0])
        uart, m, link = make_link(cap, script, auth="http")
        drive(link, 3)
        assert uart.done() and link.state == AUTH and link.counters["faults"] == {"auth_error": 1}

    scan(through_link)


# ---------------------------------------------------------------------- registration
class Registration:
    """A registration-only config in a directory of its own, register._random fixed."""

    def __init__(self):
        self.dir = tmpdir()
        self.cfg = cfg(device_secret=None)
        self.cfg["secret_file"] = register.path_for(self.dir + "/config.json")
        self._random = register._random
        register._random = lambda: RND

    def script(self, answer):
        return module_script() + ATTACH + http_script(REG_PATH, reg_body(), answer)

    def stored(self):
        return os.listdir(self.dir)

    def close(self):
        register._random = self._random
        rmtree(self.dir)


def test_registration_ok():
    def flow(cap):
        r = Registration()
        try:
            uart, m = cap.modem(r.script(reg_answer()))
            assert register.provision(m, r.cfg) is True
            assert uart.done() and r.cfg["device_secret"] == NEW_DS
            assert register.load(r.cfg["secret_file"], PK, DN) == NEW_DS
        finally:
            r.close()

    scan(flow)


def test_registration_6289():
    said = json.dumps({"code": 6289, "data": {}, "message": "device is already active: %s" % NEW_DS}).encode()

    def flow(cap):
        r = Registration()
        try:
            uart, m = cap.modem(r.script(said))
            assert register.provision(m, r.cfg, until=uart.done) is False
            assert uart.done() and r.stored() == [] and not r.cfg.get("device_secret")
            uart, m = cap.modem(http_script(REG_PATH, reg_body(), said))
            e = cap.call(register.register, m, r.cfg, RND)
            assert isinstance(e, CloudError) and e.code == 6289 and r.stored() == []
        finally:
            r.close()

    scan(flow)


UNREADABLE_REG = [
    b'{"code":200,"data":{"productKey":"%s","deviceSecret":"%s"' % (PK.encode(), NEW_DS.encode()),
    b'{"code":200,"data":{"deviceSecret":"%s\xff"}}' % NEW_DS.encode(),
    b'{"code":200,"data":{"deviceSecret":["%s"]}}' % NEW_DS.encode(),
    b'{"code":"%s"}' % NEW_DS.encode(),
    b'["%s"]' % NEW_DS.encode(),
    b"%s" % NEW_DS.encode(),
]


def test_unreadable_registration_reply_containing_a_secret():
    for answer in UNREADABLE_REG:
        def flow(cap):
            r = Registration()
            try:
                uart, m = cap.modem(http_script(REG_PATH, reg_body(), answer))
                e = cap.call(register.register, m, r.cfg, RND)
                assert isinstance(e, CloudError), (answer, e)
                assert uart.done() and r.stored() == [] and not r.cfg.get("device_secret")
            finally:
                r.close()

        scan(flow)

    def through_provision(cap):
        r = Registration()
        try:
            uart, m = cap.modem(r.script(UNREADABLE_REG[0]))
            assert register.provision(m, r.cfg, until=uart.done) is False
            assert uart.done() and r.stored() == []
        finally:
            r.close()

    scan(through_provision)


# ---------------------------------------------------------------------- diag
HEALTHY = [
    (b"AT\r", OK),
    (b"AT+CGMR\r", reply(V409)),
    (b"AT+CGSN\r", reply(b"866714043075174")),
    (b"AT+ICCID\r", reply(b"+ICCID: 89860425102180123456")),
    (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
    (b"AT+CSQ\r", reply(b"+CSQ: 20,99")),
    (b"AT+CREG?\r", reply(b"+CREG: 0,1")),
    (b"AT+CEREG?\r", reply(b"+CEREG: 0,5")),
    (b"AT+CGATT?\r", reply(b"+CGATT: 1")),
    (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
    (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :0")),
]


def check_script(connect):
    """diag.check() up to the MQTT step, then `connect` (its own exchanges)."""
    return [
        (b"AT\r", OK),
        (b"AT+CGMR\r", reply(V409)),
        (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
        (b"AT+CSQ\r", reply(b"+CSQ: 12,99")),
        (b"AT+CEREG?\r", reply(b"+CEREG: 0,1")),
        (b"AT+CGATT?\r", reply(b"+CGATT: 1")),
        (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
        (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :0")),
    ] + connect


def connected(creds):
    return mqtt_script(creds, subscribe=False) + [(b"AT+MDISCONNECT\r", OK), (b"AT+MIPCLOSE\r", OK)]


def test_diag_report_and_check():
    def flow(cap):
        uart, m = cap.modem(list(HEALTHY))
        diag.report(out=cap.out, modem=m, cfg=cfg())
        assert uart.done()
        uart, m = cap.modem([(b"AT+MCONFIG?\r", reply(('+MCONFIG: "c","u","%s"' % password()).encode()))])
        diag.at("AT+MCONFIG?", out=cap.out, modem=m, cfg=cfg())  # the module shows the password
        assert uart.done()
        # direct flow, every step passes
        uart, m = cap.modem(check_script(connected(direct())))
        assert diag.check(out=cap.out, modem=m, cfg=cfg()) is None and uart.done()
        # "http" flow: the token is fetched, used and never shown
        uart, m = cap.modem(check_script(http_script(AUTH_PATH, auth_body(), token_answer()) + connected(token_creds())))
        assert diag.check(out=cap.out, modem=m, cfg=cfg(auth="http")) is None and uart.done()
        # refused CONNACK; an auth answer that cannot be read; an auth refusal that names a secret
        uart, m = cap.modem(check_script(mqtt_script(direct(), connack=b"\r\nERROR\r\n")))
        assert diag.check(out=cap.out, modem=m, cfg=cfg()) == "MQTT connect with the configured device"
        for answer in (UNREADABLE_AUTH[0], UNREADABLE_AUTH[1], b'{"code":401,"message":"%s"}' % DS.encode()):
            uart, m = cap.modem(check_script(http_script(AUTH_PATH, auth_body(), answer)))
            assert diag.check(out=cap.out, modem=m, cfg=cfg(auth="http")) == "MQTT connect with the configured device"
            assert uart.done()

    text = scan(flow)
    assert "****" in text  # the masked config and the password the module printed back


# ---------------------------------------------------------------------- late echo (lead's at.py)
def test_late_mconfig_echo_is_dropped_never_an_answer_or_a_version():
    echo = echo_of_mconfig()

    def flow(cap):
        cid, user, pw, host = direct()
        # 1. during the next command: MIPSTART's CONNECT FAIL must not quote it as a state line
        uart, m = cap.modem([
            (mconfig(cid, user, pw), OK),
            (('AT+SSLMIPSTART="%s",1883\r' % host).encode(), echo + OK + b"\r\nCONNECT FAIL\r\n"),
        ])
        e = cap.call(m.mqtt_connect, cid, user, pw, host, 1883)
        assert e.kind == "connect" and uart.done()
        # 2. while idle: not an unknown line
        uart.feed(echo)
        m.at.poll()
        assert m.at.stats["unknown"] == 0, m.at.stats
        # 3. before the AT+CGMR answer (and around other answers): the version is +CGMR's
        uart.script.extend([
            (b"AT\r", echo + OK),
            (b"ATE0\r", OK),
            (b"AT+CGMR\r", echo + reply(V409)),
            (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
            (b"AT+CSQ\r", b"\r\n+CSQ: 20,99\r\n" + echo + OK),
        ])
        m.ready()
        assert uart.done() and m.version == "AirM2M_Air724UG_V409_LTE_AT", m.version
        assert m.at.stats["echo"] == 5, m.at.stats
        # 4. before an old module's +CGMR: the VersionError names the version only
        uart.script.append((b"AT+CGMR\r", echo + reply(V308)))
        e = cap.call(m.check_version)
        assert e.kind == "version" and uart.done()
        assert m.version == "AirM2M_Air724UG_V308_LTE_AT", m.version
        # ... and through the link (its log of the fault) and diag's report
        uart, m, link = make_link(cap, module_script(V308, echo))
        drive(link, 1)
        assert uart.done() and link.state == MODULE and link.counters["faults"] == {"version": 1}
        script = list(HEALTHY)
        script[1] = (b"AT+CGMR\r", echo + reply(V308))
        script[2] = (b"AT+CGSN\r", b"\r\n866714043075174\r\n" + echo + OK)
        uart, m = cap.modem(script)
        diag.report(out=cap.out, modem=m, cfg=cfg())
        assert uart.done() and m.at.stats["echo"] == 2

    scan(flow)


# ---------------------------------------------------------------------- re-entrant use (lead's at.py)
def test_reentrant_command_while_mconfig_is_in_flight():
    def flow(cap):
        for creds in (direct(), token_creds()):
            cid, user, pw, host = creds
            script = [(mconfig(cid, user, pw), [b"\r\n+EVT: 1\r\n", 3, OK])] + mqtt_script(creds, subscribe=False)[1:]
            uart, m = cap.modem(script)
            refused = []
            armed = []  # +EVT came: the next idle call is inside AT+MCONFIG's wait

            def on_evt(line, payload):  # a URC handler that uses the modem (a bug in an app)
                armed.append(1)
                try:
                    m.at.cmd("AT+CSQ", info=b"+CSQ")
                except ModemError as e:
                    refused.append(e)
                    raise  # the engine logs the handler's failure

            def idle():  # a watchdog feed that asks the module something (also a bug)
                if armed:
                    armed.pop()
                    e = cap.call(m.at.cmd, "AT+CSQ")
                    if isinstance(e, Exception):
                        refused.append(e)

            m.at.on(b"+EVT", on_evt)
            m.at.idle = idle
            m.mqtt_connect(cid, user, pw, host, 1883)
            m.at.idle = None
            assert m.mqtt_connected and uart.done() and b"AT+CSQ" not in uart.written
            assert len(refused) == 2 and not [e for e in refused if type(e) is not ModemError], refused
            for e in refused:
                cap.exc(e)

    scan(flow)


# ---------------------------------------------------------------------- downlinks
class StubLink:
    def __init__(self):
        self.published = []
        self.up = True

    def publish(self, topic, payload, qos=0):
        self.published.append((topic, payload, qos))
        return True

    def subscribe(self, topic, qos=0):
        pass


def test_downlinks_are_never_quoted():
    t = Topics(PK, DN)

    def flow(cap):
        link = StubLink()
        th = Thing(link, t)
        th.on_set(lambda params: None)
        th.on_service("boom", lambda params: 1 / 0)
        rid = th.post_properties({"temp": 1})
        for payload in (b'{"id":"1","params":{"k":"%s"' % DS.encode(), b"\xff" + TOKEN.encode(),
                        b'["%s"]' % NEW_DS.encode(), b'{"params":{"k":"%s"}}' % PS.encode()):
            assert th.handle(t.property_set, payload) is True
        th.handle(t.property_set, b'{"id":"%s","params":"%s"}' % (TOKEN.encode(), DS.encode()))
        th.handle(t.service("boom"), b'{"id":"%s","params":{}}' % DS.encode())
        th.handle(t.property_post_reply, json.dumps({"id": rid, "code": TOKEN, "message": "bad %s" % DS}).encode())
        th.handle(t.property_post_reply, json.dumps({"id": PS, "code": 200}).encode())
        assert th.pending() == 0 and len(link.published) == 3  # the post, the set answer, the boom answer
        ntp.forget()
        n = ntp.Ntp(link, t)
        for payload in (b'{"deviceSendTime":"%s"}' % TOKEN.encode(), b"{%s" % DS.encode(), b'"%s"' % PS.encode()):
            assert n.handle(t.ntp_response, payload) is True
        assert not ntp.synced()
        # a downlink through the driver, with no handler for it: named by topic and length
        uart, m = cap.modem([])
        uart.feed(msub(t.get.encode(), b'{"k":"%s"}' % TOKEN.encode()))
        m.poll()
        assert m.stats["downlinks"] == 1

    scan(flow)


# ---------------------------------------------------------------------- config.json (helper's config.py)
def test_config_json_with_a_bad_byte_beside_the_secret():
    d = tmpdir()
    path = d + "/config.json"
    text = b'{"product_key": "%s", "device_name": "%s", "device_secret": "%s\xff"}' % (PK.encode(), DN.encode(), DS.encode())
    with open(path, "wb") as f:
        f.write(text)

    got = []

    def flow(cap):
        got.append(cap.call(config.load, path))

    try:
        scan(flow)
    finally:
        rmtree(d)
    assert isinstance(got[0], config.ConfigError), "config.load gave %s, not a ConfigError" % type(got[0]).__name__


# ---------------------------------------------------------------------- registration over MQTT
def test_registration_over_mqtt_without_pre_registration_then_the_token_login():
    push = json.dumps({"clientId": NWL_CID, "productKey": PK, "deviceName": DN, "deviceToken": NWL_TOKEN}).encode()

    def flow(cap):
        r = Registration()
        try:
            r.cfg["register"] = "mqtt_nwl"
            request = register.mqtt_request(r.cfg, RND)
            script = module_script() + ATTACH + [(b"AT+MDISCONNECT\r", OK), (b"AT+MIPCLOSE\r", OK),
                                                 (b"AT+MQTTMSGSET=0\r", OK)] + mqtt_script(
                request + (aliyun.mqtt_host(r.cfg),), subscribe=False)
            script[-1] = (b"AT+MQTTMSGSET=0\r", OK + msub(b"/ext/regnwl", push) + b"\r\nCLOSED\r\n")
            script += [(b"AT+MDISCONNECT\r", OK), (b"AT+MIPCLOSE\r", OK)]
            uart, m = cap.modem(script)
            assert register.provision(m, r.cfg) is True
            assert uart.done() and (r.cfg["token_client_id"], r.cfg["device_token"]) == (NWL_CID, NWL_TOKEN)
            stored = json.loads(open(r.cfg["secret_file"]).read())
            assert stored == {"product_key": PK, "device_name": DN, "client_id": NWL_CID, "device_token": NWL_TOKEN}
            # the link logs in with the token; config.masked() hides both
            creds = (NWL_CID + "|securemode=-2,authType=connwl|", DN + "&" + PK, NWL_TOKEN, aliyun.mqtt_host(r.cfg))
            uart, m = cap.modem(module_script() + ATTACH + link_mqtt(creds))
            link = Link(m, r.cfg, Topics(PK, DN))
            drive(link, 3)
            assert link.state == UP and uart.done()
            assert [c for c in cap.carried() if NWL_TOKEN.encode() in c], "the token went to MCONFIG"
            link.log_stats()
            cap.out(str(config.masked(r.cfg)))
        finally:
            r.close()

    scan(flow)


def test_unreadable_mqtt_registration_answers_containing_a_token():
    for answer in (b'{"clientId":"%s","deviceToken":"%s"' % (NWL_CID.encode(), NWL_TOKEN.encode()),
                   b'{"clientId":"%s\\"x","deviceToken":"%s"}' % (NWL_CID.encode(), NWL_TOKEN.encode()),
                   b'{"clientId":"%s","deviceToken":["%s"]}' % (NWL_CID.encode(), NWL_TOKEN.encode()),
                   b'{"clientId":"%s","deviceName":"other-1","deviceToken":"%s"}' % (NWL_CID.encode(), NWL_TOKEN.encode())):
        def flow(cap):
            r = Registration()
            try:
                r.cfg["register"] = "mqtt_nwl"
                e = cap.call(register._store, r.cfg, "/ext/regnwl", answer)
                assert isinstance(e, CloudError), (answer, e)
                assert r.stored() == [] and not r.cfg.get("device_token")
            finally:
                r.close()

        scan(flow)
