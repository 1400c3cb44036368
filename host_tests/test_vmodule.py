# The virtual Air724UG (tools/sim/), driven like a UART over a raw TCP socket with exact
# byte expectations. MQTT and HTTP go to the local Aliyun (tools/cloud/, LocalCloud), which
# checks the real sign rules; a tiny HTTP echo server shows exactly what the module sent.
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from tools.cloud.api import LocalCloud
from tools.sim import VirtualModule
from tools.sim.dialect import ParamError, decode_escapes, encode_escapes, parse_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PK, DN, DS = "a1mxL3s6Z7m", "866714043075174", "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
VERSION = "AirM2M_Air724UG_V409_LTE_AT"
UP = "/%s/%s/user/update" % (PK, DN)
GET = "/%s/%s/user/get" % (PK, DN)
BROKER_HOST = PK + ".iot-as-mqtt.cn-shanghai.aliyuncs.com"
AUTH = "https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"


def ok(*lines):
    return b"".join(b"\r\n" + x + b"\r\n" for x in lines) + b"\r\nOK\r\n"


def line(x):
    return b"\r\n" + x + b"\r\n"


def direct_creds(securemode):
    cid = "%s|securemode=%d,signmethod=hmacsha256|" % (DN, securemode)
    content = "clientId%sdeviceName%sproductKey%s" % (DN, DN, PK)
    pw = hmac.new(DS.encode(), content.encode(), hashlib.sha256).hexdigest()
    return cid, "%s&%s" % (DN, PK), pw


class Host:
    """The MCU's side of the UART: a raw socket and exact expectations."""

    def __init__(self, vm):
        self.s = socket.create_connection(("127.0.0.1", vm.port))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data.encode("latin-1") if isinstance(data, str) else data)

    def cmd(self, text):
        self.send(text + "\r")

    def read(self, n, timeout=3.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            rem = deadline - time.monotonic()
            if rem <= 0:
                raise AssertionError("timeout: have %r, want %d bytes" % (self.buf, n))
            self.s.settimeout(rem)
            try:
                d = self.s.recv(65536)
            except TimeoutError:
                continue
            if not d:
                raise AssertionError("closed; have %r" % self.buf)
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def expect(self, want, timeout=3.0):
        got = self.read(len(want), timeout)
        assert got == want, "got %r, want %r" % (got, want)

    def until(self, marker, timeout=3.0):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            rem = deadline - time.monotonic()
            if rem <= 0:
                raise AssertionError("timeout waiting for %r; have %r" % (marker, self.buf))
            self.s.settimeout(rem)
            try:
                d = self.s.recv(65536)
            except TimeoutError:
                continue
            if not d:
                raise AssertionError("closed")
            self.buf += d
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def quiet(self, seconds=0.3):
        self.s.settimeout(seconds)
        try:
            d = self.s.recv(65536)
        except TimeoutError:
            d = b""
        self.buf += d
        assert self.buf == b"", "unexpected %r" % self.buf

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def cloud():
    c = LocalCloud(devices=[{"productKey": PK, "deviceName": DN, "deviceSecret": DS}])
    c.start()
    yield c
    c.stop()


@pytest.fixture
def make_vm(cloud):
    made = []

    def make(**kw):
        kw.setdefault("auth_url", cloud.auth_url)
        kw.setdefault("mqtt_addr", ("127.0.0.1", cloud.mqtt_port))
        kw.setdefault("mqtts_addr", ("127.0.0.1", cloud.mqtts_port))
        vm = VirtualModule(**kw).start()
        made.append(vm)
        return vm
    yield make
    for vm in made:
        vm.stop()


@pytest.fixture
def host(make_vm):
    """A trained module with echo off, attached, bearer open."""
    hosts = []

    def make(bearer=True, **kw):
        vm = make_vm(**kw)
        h = Host(vm)
        hosts.append(h)
        h.cmd("AT")
        h.expect(b"AT\r\r\nOK\r\n")
        h.cmd("ATE0")
        h.expect(b"ATE0\r\r\nOK\r\n")
        if bearer:
            h.cmd('AT+SAPBR=3,1,"CONTYPE","GPRS"')
            h.expect(ok())
            h.cmd('AT+SAPBR=3,1,"APN","CMIIOT"')
            h.expect(ok())
            h.cmd("AT+SAPBR=1,1")
            h.expect(ok())
        return vm, h
    yield make
    for h in hosts:
        h.close()


def mqtt_up(h, tls=True, keepalive=60):
    cid, user, pw = direct_creds(2 if tls else 3)
    h.cmd('AT+MCONFIG="%s","%s","%s"' % (cid, user, pw))
    h.expect(ok())
    h.cmd('AT+%s="%s",1883' % ("SSLMIPSTART" if tls else "MIPSTART", BROKER_HOST))
    h.expect(ok() + line(b"CONNECT OK"), 5)
    h.cmd("AT+MCONNECT=1,%d" % keepalive)
    h.expect(ok() + line(b"CONNACK OK"), 5)


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("port %d not back" % port)


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------
def test_parse_params_and_escapes():
    assert parse_params('"a|b,c=d", "u&p" ,x,12') == [("a|b,c=d", True), ("u&p", True),
                                                     ("x", False), ("12", False)]
    assert parse_params("") == []
    assert parse_params('"t",') == [("t", True), ("", False)]
    for bad in ('"open', '"a"b', 'a"b'):
        with pytest.raises(ParamError):
            parse_params(bad)
    assert decode_escapes(r"\22q\22\0d\0A\5C\41\\") == '"q"\r\n' + "\\" + r"\41\\"
    raw = b'x"y\r\n\\z'
    assert decode_escapes(encode_escapes(raw)).encode("latin-1") == raw


# ---------------------------------------------------------------------------------------
# framing
# ---------------------------------------------------------------------------------------
def test_silent_until_upper_case_AT_then_echo_and_framing(make_vm):
    vm = make_vm()
    h = Host(vm)
    h.send("at\r")
    h.send("AT+CGMR\r")
    h.send(b"\x00\xff junk AT\n")
    h.quiet(0.3)
    h.send("AT\r")
    h.expect(b"AT\r\r\nOK\r\n")
    h.cmd("AT+CGMR")
    h.expect(b'AT+CGMR\r\r\n+CGMR: "' + VERSION.encode() + b'"\r\n\r\nOK\r\n')
    h.send("AT+CSQ\r\n")                     # CRLF works too; the LF is swallowed
    h.expect(b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    h.cmd("ATE0")
    h.expect(b"ATE0\r\r\nOK\r\n")
    h.cmd("AT+CSQ")
    h.expect(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    h.cmd("ATI")
    h.expect(ok(VERSION.encode()))
    h.cmd("AT+BOGUS")
    h.expect(b"\r\nERROR\r\n")
    h.cmd('AT+SAPBR="unterminated')
    h.expect(b"\r\nERROR\r\n")
    h.cmd("AT+CPIN?")
    h.expect(ok(b"+CPIN: READY"))
    for c in ("CREG", "CEREG", "CGREG"):
        h.cmd("AT+%s?" % c)
        h.expect(ok(b"+%s: 0,1" % c.encode()))
    h.cmd("AT+CGSN")
    h.expect(ok(b"866714043075174"))
    h.cmd("AT+ICCID")
    h.expect(ok(b"+ICCID: 89860425102180123456"))
    h.cmd("AT+CCID")
    h.expect(ok(b"89860425102180123456"))
    h.cmd("AT+MQTTSTATU")
    h.expect(b"\r\n+MQTTSTATU :0\r\n\r\nOK\r\n")
    h.cmd("ATE1")
    h.expect(b"\r\nOK\r\n")
    h.cmd("AT")
    h.expect(b"AT\r\r\nOK\r\n")
    assert vm.commands[:3] == ["AT", "AT+CGMR", "AT+CSQ"]
    assert b"".join(d for way, d in vm.log if way == "rx").startswith(b"at\rAT+CGMR\r")
    h.close()


def test_pyserial_socket_url_and_reconnect_keeps_state(make_vm):
    import serial
    vm = make_vm(version="V401")
    ser = serial.serial_for_url(vm.url, timeout=2)
    ser.write(b"AT\r")
    assert ser.read(9) == b"AT\r\r\nOK\r\n"
    ser.write(b"ATE0\r")
    assert ser.read(11) == b"ATE0\r\r\nOK\r\n"
    ser.close()
    h = Host(vm)                 # a new host connection: trained, echo still off
    h.cmd("AT+CGMR")
    h.expect(ok(b'+CGMR: "AirM2M_Air724UG_V401_LTE_AT"'))
    vm.power_cycle()             # now all is lost: silent until AT, echo back on
    h.cmd("AT+CGMR")
    h.quiet(0.3)
    h.cmd("AT")
    h.expect(b"AT\r\r\nOK\r\n")
    assert vm.faults_injected == {"power_cycle": 1}
    h.close()


def test_no_sim_and_attach_after_polls(host, make_vm):
    vm = make_vm(sim=False)
    h = Host(vm)
    h.cmd("AT")
    h.expect(b"AT\r\r\nOK\r\n")
    h.cmd("AT+CPIN?")
    h.expect(b"AT+CPIN?\r\r\n+CME ERROR: 10\r\n")
    h.close()
    _vm, h = host(bearer=False, attach_after=2)
    h.cmd("AT+SAPBR=1,1")                      # not attached yet
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    for want in (b"0", b"0", b"1", b"1"):
        h.cmd("AT+CGATT?")
        h.expect(ok(b"+CGATT: " + want))
    h.cmd('AT+SAPBR=3,1,"CONTYPE","GPRS"')
    h.expect(ok())
    h.cmd("AT+SAPBR=2,1")
    h.expect(ok(b'+SAPBR: 1,3,"0.0.0.0"'))
    h.cmd("AT+SAPBR=1,1")
    h.expect(ok())
    h.cmd("AT+SAPBR=1,1")
    h.expect(b"\r\n+CME ERROR: 3\r\n")
    h.cmd("AT+SAPBR=2,1")
    assert re.fullmatch(rb'\r\n\+SAPBR: 1,1,"10\.\d+\.\d+\.\d+"\r\n', h.until(b'"\r\n'))
    h.expect(b"\r\nOK\r\n")
    h.cmd("AT+SAPBR=0,1")
    h.expect(ok())


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------
def test_http_auth_flow_against_local_cloud(host):
    _vm, h = host()
    sign = hmac.new(DS.encode(), ("clientId%sdeviceName%sproductKey%s" % (DN, DN, PK)).encode(),
                    hashlib.md5).hexdigest()
    body = "productKey=%s&sign=%s&clientId=%s&deviceName=%s" % (PK, sign, DN, DN)
    assert len(body) == 112
    h.cmd("AT+HTTPINIT")
    h.expect(ok())
    h.cmd("AT+HTTPINIT")
    h.expect(b"\r\n+CME ERROR: 3\r\n")
    h.cmd('AT+HTTPPARA="URL","%s"' % AUTH)
    h.expect(ok())
    h.cmd('AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"')
    h.expect(ok())
    h.cmd("AT+HTTPDATA=112,20000")
    h.expect(b"\r\nDOWNLOAD\r\n")
    h.send(body[:50])
    time.sleep(0.1)
    h.send(body[50:] + "AT+CSQ\r")           # exactly 112 bytes are data, the rest a command
    h.expect(b"\r\nOK\r\n" + ok(b"+CSQ: 20,99"))
    h.cmd("AT+HTTPACTION=1")
    h.expect(ok())
    urc = h.until(b"\r\n", 5) + h.until(b"\r\n", 5)
    m = re.fullmatch(rb"\r\n\+HTTPACTION: 1,200,(\d+)\r\n", urc)
    assert m, urc
    n = int(m.group(1))
    h.cmd("AT+HTTPREAD")
    h.expect(b"\r\n+HTTPREAD: %d\r\n" % n)
    reply = json.loads(h.read(n))
    h.expect(b"\r\nOK\r\n")
    assert reply["code"] == 200 and reply["data"]["iotId"] and reply["data"]["iotToken"]
    h.cmd("AT+HTTPTERM")
    h.expect(ok())
    # the token logs in to the broker (flow A)
    h.cmd('AT+MCONFIG=%s,"%s","%s"' % (DN, reply["data"]["iotId"], reply["data"]["iotToken"]))
    h.expect(ok())
    h.cmd('AT+SSLMIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"CONNECT OK"), 5)
    h.cmd("AT+MCONNECT=1,300")
    h.expect(ok() + line(b"CONNACK OK"), 5)


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"path": self.path, "headers": dict(self.headers.items()),
                          "body": data.decode("latin-1")}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_http_headers_escapes_and_errors(host, echo_server):
    _vm, h = host(auth_url=echo_server + "/base", http_delay=0.2)
    h.cmd("AT+HTTPINIT")
    h.expect(ok())
    h.cmd('AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/x?y=1"')
    h.expect(ok())
    h.cmd(r'AT+HTTPPARA="USER_DEFINED","X-Quote: say \22hi\22"')
    h.expect(ok())
    h.cmd('AT+HTTPPARA="USER_DEFINED","X-Two: 2"')
    h.expect(ok())
    h.cmd("AT+HTTPDATA=7,5000")
    h.expect(line(b"DOWNLOAD"))
    h.send(b"a\r\nb,\"c")
    h.expect(ok())
    t0 = time.monotonic()
    h.cmd("AT+HTTPACTION=1")
    h.expect(ok())
    urc = h.until(b"\r\n", 5) + h.until(b"\r\n", 5)
    assert time.monotonic() - t0 >= 0.2                      # http_delay
    n = int(re.fullmatch(rb"\r\n\+HTTPACTION: 1,201,(\d+)\r\n", urc).group(1))
    h.cmd("AT+HTTPREAD")
    h.expect(b"\r\n+HTTPREAD: %d\r\n" % n)
    got = json.loads(h.read(n))
    h.expect(b"\r\nOK\r\n")
    assert got["path"] == "/base/auth/x?y=1"
    assert got["body"] == 'a\r\nb,"c'
    assert got["headers"]["X-Quote"] == 'say "hi"' and got["headers"]["X-Two"] == "2"
    assert got["headers"]["Host"] == "iot-auth.cn-shanghai.aliyuncs.com"
    # an unknown host: DNS error 603
    h.cmd('AT+HTTPPARA="URL","https://example.com/x"')
    h.expect(ok())
    h.cmd("AT+HTTPACTION=1")
    h.expect(ok() + line(b"+HTTPACTION: 1,603,0"), 5)
    # HTTPDATA that never completes: ERROR after <ms>
    h.cmd("AT+HTTPDATA=10,1000")
    h.expect(line(b"DOWNLOAD"))
    h.send("12345")
    h.expect(b"\r\nERROR\r\n", 3)
    # no bearer: 601
    h.cmd("AT+SAPBR=0,1")
    h.expect(ok())
    h.cmd('AT+HTTPPARA="URL","%s"' % AUTH)
    h.expect(ok())
    h.cmd("AT+HTTPACTION=1")
    h.expect(ok() + line(b"+HTTPACTION: 1,601,0"), 5)
    h.cmd("AT+HTTPTERM")
    h.expect(ok())
    h.cmd("AT+HTTPTERM")
    h.expect(b"\r\nERROR\r\n")


# ---------------------------------------------------------------------------------------
# MQTT
# ---------------------------------------------------------------------------------------
def test_mqtt_publish_escapes_and_mpubex_over_tls(host, cloud):
    vm, h = host(connect_delay=0.3)
    t0 = time.monotonic()
    mqtt_up(h, tls=True)
    assert time.monotonic() - t0 >= 0.3
    since = len(cloud.uplinks())
    h.cmd(r'AT+MPUB="%s",0,0,"{\22a\22:\22x\5Cy\22}\0D\0Aend,=|"' % UP)
    h.expect(ok())
    u = cloud.wait_uplink(lambda t, p: t == UP, since=since)
    assert u == (UP, b'{"a":"x\\y"}\r\nend,=|', 0)
    h.cmd('AT+MPUB="%s",0,0,unquoted' % UP)              # the message must be quoted
    h.expect(b"\r\nERROR\r\n")
    h.cmd('AT+MPUB="%s",0,0,"%s"' % (UP, "x" * 2385))
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    h.cmd('AT+MPUB="%s",1,0,"%s"' % (UP, r"\22" * 2384))  # 2384 bytes after decoding
    h.expect(ok() + line(b"PUBACK"), 5)
    payload = bytes(range(256)) + b'\r\n"\\'
    h.cmd('AT+MPUBEX="%s",1,0,%d' % (UP, len(payload)))
    h.expect(b"\r\n> ")
    h.send(payload)
    h.expect(ok() + line(b"PUBACK"), 5)
    u = cloud.wait_uplink(lambda t, p: p == payload, since=since)
    assert u == (UP, payload, 1)
    assert len(cloud.uplinks(UP)[since:]) == 3
    assert vm.stats["published"] == 3


def test_qos1_second_publish_before_puback_and_double_mconnect(host, cloud):
    _vm, h = host(puback_delay=0.4)
    mqtt_up(h, tls=False)
    h.cmd("AT+MCONNECT=1,60")
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    h.cmd('AT+MPUB="%s",1,0,"one"' % UP)
    h.expect(ok())
    h.cmd('AT+MPUB="%s",1,0,"two"' % UP)                  # before PUBACK: strict
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    h.cmd('AT+MPUBEX="%s",1,0,3' % UP)
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    h.cmd('AT+MPUB="%s",0,0,"zero"' % UP)                 # QoS 0 is not held back
    h.expect(ok())
    h.expect(line(b"PUBACK"), 3)
    h.cmd('AT+MPUB="%s",1,0,"three"' % UP)
    h.expect(ok() + line(b"PUBACK"), 3)
    got = [p for t, p, q in cloud.uplinks(UP)][-3:]
    assert got == [b"one", b"zero", b"three"]
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"ALREADY CONNECT"))
    h.cmd("AT+MDISCONNECT")
    h.expect(ok())
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :0"))
    h.cmd("AT+MIPCLOSE")
    h.expect(ok())
    h.cmd("AT+MIPCLOSE")
    h.expect(b"\r\n+CME ERROR: 767\r\n")


def test_downlinks_push_and_cached(host, cloud):
    vm, h = host(suback_delay=0.1)
    mqtt_up(h, tls=True)
    h.cmd('AT+MSUB="%s", 1' % GET)
    h.expect(ok() + line(b"SUBACK"), 5)
    # cached mode is the power-up default: +MSUB: <slot>, 4 kept, oldest overwritten
    for i in range(5):
        cloud.publish(GET, b"m%d" % i, 0)
        h.expect(line(b"+MSUB: %d" % (i % 4)), 5)
    h.cmd("AT+MQTTMSGGET")
    want = b"".join(b"\r\n+MSUB: %s,2 byte,m%d\r\n" % (GET.encode(), i) for i in (1, 2, 3, 4))
    h.expect(want + b"\r\nOK\r\n")
    h.cmd("AT+MQTTMSGSET=0")
    h.expect(ok())
    nasty = b'a,b\r\n"c",5 byte,\r\nOK\r\n\x00\xff'
    cloud.publish(GET, nasty, 1)
    h.expect(b'\r\n+MSUB: "' + GET.encode() + b'",%d byte,' % len(nasty) + nasty + b"\r\n", 5)
    h.cmd('AT+MUNSUB="%s"' % GET)
    h.expect(ok() + line(b"UNSUBACK"), 5)
    assert vm.stats["downlinks"] == 6


def test_connack_refused_then_error(host):
    vm, h = host()
    cid, user, _pw = direct_creds(3)
    h.cmd('AT+MCONFIG="%s","%s","%s"' % (cid, user, "0" * 64))
    h.expect(ok())
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"CONNECT OK"), 5)
    h.cmd("AT+MCONNECT=1,60")
    h.expect(ok() + b"\r\nERROR\r\n", 5)
    assert vm.connack_code not in (None, 0)
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :0"))
    h.quiet(0.3)                                        # no CLOSED after a refusal


def test_closed_on_broker_restart_and_on_idle(host, cloud):
    _vm, h = host(idle_close=0.5)
    mqtt_up(h, tls=False)
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :1"))
    cloud.restart_broker()
    h.expect(line(b"CLOSED"), 10)
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :0"))
    h.cmd("AT+MIPCLOSE")                                # nothing open after CLOSED
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    wait_port(cloud.mqtt_port)
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"CONNECT OK"), 5)
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :2"))
    t0 = time.monotonic()
    h.expect(line(b"CLOSED"), 3)                        # no MCONNECT: the server drops it
    assert time.monotonic() - t0 >= 0.3
    h.cmd("AT+MCONNECT=1,60")
    h.expect(b"\r\n+CME ERROR: 767\r\n")
    h.cmd('AT+MIPSTART="nowhere.example.org",1883')     # DNS failure
    h.expect(ok() + line(b"STATE: TCP CLOSED") + line(b"CONNECT FAIL"), 5)
    h.cmd("AT+SAPBR=0,1")
    h.expect(ok())
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)        # no bearer
    h.expect(ok() + line(b"STATE: IP INITIAL") + line(b"CONNECT FAIL"))


def test_module_sends_pingreq_itself(host):
    vm, h = host(ping_interval=0.3)
    mqtt_up(h, tls=False)
    time.sleep(1.2)
    assert vm.stats["pingreq"] >= 2 and vm.stats["pingresp"] >= 1
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :1"))


# ---------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------
def test_fault_closed_and_pdp_loss(host):
    vm, h = host()
    mqtt_up(h, tls=False)
    vm.closed()
    h.expect(line(b"CLOSED"))
    h.cmd("AT+MQTTSTATU")
    h.expect(ok(b"+MQTTSTATU :0"))
    mqtt_up(h, tls=False)
    vm.pdp_loss(down=2)
    h.expect(line(b"+PDP: DEACT") + line(b"CLOSED"))
    h.cmd("AT+SAPBR=2,1")
    h.expect(ok(b'+SAPBR: 1,3,"0.0.0.0"'))
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"STATE: PDP DEACT") + line(b"CONNECT FAIL"))
    for want in (b"0", b"0", b"1"):
        h.cmd("AT+CGATT?")
        h.expect(ok(b"+CGATT: " + want))
    h.cmd("AT+SAPBR=1,1")
    h.expect(ok())
    mqtt_up(h, tls=False)
    assert vm.faults_injected == {"closed": 1, "pdp_loss": 1}


def test_fault_reboot_and_sim(host):
    vm, h = host()
    mqtt_up(h, tls=True)
    vm.reboot()
    h.expect(line(b"RDY") + line(b"+CPIN: READY"))
    h.cmd("AT+MQTTSTATU")                                # echo is back on, no autobaud
    h.expect(b"AT+MQTTSTATU\r" + ok(b"+MQTTSTATU :0"))
    h.cmd("AT+SAPBR=2,1")
    h.expect(b"AT+SAPBR=2,1\r" + ok(b'+SAPBR: 1,3,"0.0.0.0"'))
    vm.sim_removed()
    h.expect(line(b"+CPIN: SIM REMOVED"))
    h.cmd("AT+CPIN?")
    h.expect(b"AT+CPIN?\r\r\n+CME ERROR: 10\r\n")
    h.cmd("AT+CGATT?")
    h.expect(b"AT+CGATT?\r" + ok(b"+CGATT: 0"))
    vm.sim_inserted()
    h.expect(line(b"+CPIN: READY"))
    assert vm.faults_injected == {"reboot": 1, "sim_removed": 1, "sim_inserted": 1}


def test_fault_garbage_drop_mute_slow(host):
    vm, h = host(seed=7)
    assert vm.garbage(b"\xfe\r\nNOISE") == b"\xfe\r\nNOISE"
    h.expect(b"\xfe\r\nNOISE")
    g = vm.garbage()
    assert 4 <= len(g) <= 24
    h.expect(g)
    vm2 = VirtualModule(seed=7)                          # deterministic with the seed
    vm2.garbage(b"\xfe\r\nNOISE")
    assert vm2.garbage() == g
    vm.drop_bytes(4)
    h.cmd("AT+CSQ")
    h.expect(b"SQ: 20,99\r\n\r\nOK\r\n")
    vm.mute(2)
    h.cmd("AT+CSQ")
    h.cmd("AT+SAPBR=0,1")                                # lost: the bearer stays open
    h.quiet(0.3)
    h.cmd("AT+SAPBR=2,1")
    assert h.until(b"OK\r\n").startswith(b'\r\n+SAPBR: 1,1,"10.')
    vm.mute(1, execute=True)
    h.cmd("AT+SAPBR=0,1")                                # done, but the reply is lost
    h.quiet(0.3)
    h.cmd("AT+SAPBR=2,1")
    h.expect(ok(b'+SAPBR: 1,3,"0.0.0.0"'))
    vm.slow(0.4)
    t0 = time.monotonic()
    h.cmd("AT")
    h.expect(ok())
    assert time.monotonic() - t0 >= 0.4
    vm.slow(0)
    assert vm.faults_injected == {"garbage": 2, "drop_bytes": 1, "mute": 2, "slow": 2}


def test_scheduled_faults(host):
    vm, h = host()
    mqtt_up(h, tls=False)
    vm.schedule("closed", on_command="AT+MPUB", nth=2)
    vm.schedule("garbage", b"~~", delay=0.2)
    h.expect(b"~~", 2)
    h.cmd('AT+MPUB="%s",0,0,"a"' % UP)
    h.expect(ok())
    h.cmd('AT+MPUB="%s",0,0,"b"' % UP)
    h.expect(ok() + line(b"CLOSED"))
    assert vm.faults_injected == {"closed": 1, "garbage": 1}
    with pytest.raises(ValueError):
        vm.schedule("explode", delay=1)


def test_baud_pacing(make_vm):
    vm = make_vm(baud=9600)                     # 960 bytes/s each way
    h = Host(vm)
    h.cmd("AT")
    h.expect(b"AT\r\r\nOK\r\n")
    t0 = time.monotonic()
    h.cmd("AT+CGMR")                             # 8 bytes in, 53 bytes out
    h.expect(b'AT+CGMR\r\r\n+CGMR: "' + VERSION.encode() + b'"\r\n\r\nOK\r\n')
    assert time.monotonic() - t0 >= (8 + 53) / 960.0 * 0.9
    h.close()


def test_cli_prints_url_and_runs_until_killed():
    p = subprocess.Popen([sys.executable, "-m", "tools.sim", "--port", "0", "--version", "V401853"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        url = p.stdout.readline().decode().strip()
        m = re.fullmatch(r"socket://127\.0\.0\.1:(\d+)", url)
        assert m, url
        s = socket.create_connection(("127.0.0.1", int(m.group(1))))
        s.sendall(b"AT\rAT+CGMR\r")
        want = b'AT\r\r\nOK\r\nAT+CGMR\r\r\n+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"\r\n\r\nOK\r\n'
        got = b""
        s.settimeout(3)
        while len(got) < len(want):
            got += s.recv(4096)
        assert got == want
        s.close()
    finally:
        p.terminate()
        assert p.wait(5) == 0                    # SIGTERM is a clean stop, not a kill
        p.stdout.close()
        p.stderr.close()


def test_attach_after_seconds_reply_delay_restart_and_refused_port(host):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()                                            # nothing listens there
    vm, h = host(bearer=False, attach_after=0.4, reply_delay=0.1,
                 mqtt_addr=("127.0.0.1", dead_port))
    t0 = time.monotonic()
    h.cmd("AT+CGATT?")
    h.expect(ok(b"+CGATT: 0"))
    assert time.monotonic() - t0 >= 0.1                  # reply_delay
    time.sleep(0.4)
    h.cmd("AT+CGATT?")
    h.expect(ok(b"+CGATT: 1"))
    h.cmd("AT+SAPBR=1,1")
    h.expect(ok())
    h.cmd('AT+MIPSTART="%s","1883"' % BROKER_HOST)      # a quoted port works too
    h.expect(ok() + line(b"STATE: TCP CLOSED") + line(b"CONNECT FAIL"), 5)
    h.cmd("AT+CFUN=1,1")                                 # a restart asked by the host
    h.expect(ok() + line(b"RDY") + line(b"+CPIN: READY"))
    h.cmd("AT+CGATT?")                                   # echo on again, attach restarts
    h.expect(b"AT+CGATT?\r" + ok(b"+CGATT: 0"))
    assert vm.faults_injected == {}


# ---------------------------------------------------------------------------------------
# module families (tools/sim/personality.py), the file system, SSL contexts, verified TLS
# ---------------------------------------------------------------------------------------
CA_FILE = "ca.crt"


def read_pem(path):
    with open(path, "rb") as f:
        return f.read()


def fswrite(h, name, data, prompt=b"\r\n> "):
    h.cmd('AT+FSWRITE="%s",0,%d,10' % (name, len(data)))
    h.expect(prompt)
    h.send(data)
    h.expect(ok())


def trust(h, pem, ctx=88, level=1):
    """The CA into the module's file system and verification on for one SSL context."""
    h.cmd('AT+FSDEL="%s"' % CA_FILE)                      # there or not
    h.expect(b"\r\n")
    assert h.until(b"\r\n") in (b"OK\r\n", b"ERROR\r\n")
    h.cmd('AT+FSCREATE="%s"' % CA_FILE)
    h.expect(ok())
    fswrite(h, CA_FILE, pem)
    h.cmd('AT+SSLCFG="cacert",%d,"%s"' % (ctx, CA_FILE))
    h.expect(ok())
    h.cmd('AT+SSLCFG="seclevel",%d,%d' % (ctx, level))
    h.expect(ok())


@pytest.mark.parametrize("name,version", [("air724ug", "AirM2M_Air724UG_V409_LTE_AT"),
                                          ("air780e", "AirM2M_780E_V1161_LTE_AT"),
                                          ("air780ep", "AirM2M_780EP_V1007_LTE_AT")])
def test_each_personality_names_itself(host, name, version):
    vm, h = host(bearer=False, personality=name, attach_after=0)
    h.cmd("AT+CGMR")
    h.expect(ok(b'+CGMR: "' + version.encode() + b'"'))
    h.cmd("ATI")
    h.expect(ok(version.encode()))
    assert vm.personality.name == name
    vm, h = host(bearer=False, personality=name, version="V1234", attach_after=0)  # another build, same family
    h.cmd("AT+CGMR")
    h.expect(ok(b'+CGMR: "' + version.replace(version.split("_V")[1].split("_")[0], "1234").encode() + b'"'))
    with pytest.raises(ValueError):
        VirtualModule(personality="air999")


def test_the_air724_has_no_file_system_nor_ssl_contexts(host):
    vm, h = host(bearer=False)
    for cmd in ('AT+FSCREATE="ca.crt"', 'AT+FSWRITE="ca.crt",0,5,10', 'AT+FSDEL="ca.crt"',
                'AT+SSLCFG="cacert",88,"ca.crt"', 'AT+SSLCFG="seclevel",88,1'):
        h.cmd(cmd)
        h.expect(line(b"ERROR"))
    h.quiet()
    h.cmd("AT+HTTPSSL=1")                                 # HTTPS itself exists on both
    h.expect(ok())
    assert vm.files == {}


def test_air780_file_system(host):
    vm, h = host(bearer=False, personality="air780e", attach_after=0)
    h.cmd('AT+FSDEL="a.txt"')                             # nothing to delete
    h.expect(line(b"ERROR"))
    h.cmd('AT+FSWRITE="a.txt",0,3,10')                    # nor to write into
    h.expect(line(b"ERROR"))
    h.cmd('AT+FSCREATE="a.txt"')
    h.expect(ok())
    h.cmd('AT+FSCREATE="a.txt"')                          # there already
    h.expect(line(b"ERROR"))
    fswrite(h, "a.txt", b"0123456789\r\nOK\r\n")          # raw bytes: nothing in them is a command
    h.cmd('AT+FSFLSIZE="a.txt"')
    h.expect(ok(b"+FSFLSIZE: 16"))
    fswrite(h, "a.txt", b"ab")                            # mode 0 writes from the start ...
    assert vm.files["a.txt"] == b"ab23456789\r\nOK\r\n"   # ... and keeps the tail
    h.cmd('AT+FSWRITE="a.txt",1,2,10')                    # mode 1 appends
    h.expect(b"\r\n> ")
    h.send(b"yz")
    h.expect(ok())
    h.cmd('AT+FSREAD="a.txt",1,6,12')
    h.expect(ok(b"OK\r\nyz"))
    h.cmd("AT+RESET")                                     # flash: the file survives a restart
    h.expect(ok() + line(b"^boot.rom'v'!\\n") + line(b"RDY") + line(b"^MODE: 17,17"))
    h.until(b",0\r\n")                                   # ... the rest of the network's lines
    h.cmd("ATE0")
    h.expect(b"ATE0\r" + ok())
    h.cmd('AT+FSREAD="a.txt",0,2,0')
    h.expect(ok(b"ab"))
    h.cmd('AT+FSWRITE="a.txt",0,5,1')                     # the data never comes
    h.expect(b"\r\n> ")
    h.expect(line(b"TimeOut"), 3)
    h.cmd('AT+FSDEL="a.txt"')
    h.expect(ok())
    assert vm.files == {}


def test_air780_ssl_contexts_set_ask_erase_and_are_forgotten_at_a_restart(host):
    vm, h = host(bearer=False, personality="air780ep", attach_after=0)
    h.cmd('AT+SSLCFG="cacert",88,"ca.crt"')
    h.expect(ok())
    h.cmd('AT+SSLCFG="seclevel",153,1')
    h.expect(ok())
    h.cmd('AT+SSLCFG="cacert",88')
    h.expect(ok(b'+SSLCFG: "cacert",88,"ca.crt"'))
    h.cmd('AT+SSLCFG="seclevel",153')
    h.expect(ok(b'+SSLCFG: "seclevel",153,1'))
    for bad in ('AT+SSLCFG="seclevel",88,3', 'AT+SSLCFG="cacert",7,"ca.crt"', 'AT+SSLCFG="nosuch",88,1'):
        h.cmd(bad)
        h.expect(line(b"ERROR"))
    assert vm.net.ssl == {88: {"cacert": "ca.crt"}, 153: {"seclevel": 1}}
    h.cmd('AT+SSLCFG="cacert",88,')                       # an empty value erases
    h.expect(ok())
    assert vm.net.ssl[88] == {}
    h.cmd("AT+CFUN=1,1")
    h.expect(ok() + line(b"^boot.rom'v'!\\n") + line(b"RDY") + line(b"^MODE: 17,17"))
    assert vm.net.ssl == {}                               # settings are not kept


def test_air780_boot_sim_busy_and_registration_chatter(host):
    vm, h = host(bearer=False, personality="air780e", sim_busy=30.0)
    vm.reboot()
    h.expect(line(b"^boot.rom'v'!\\n") + line(b"RDY"))    # no +CPIN line on this family
    h.cmd("AT+CPIN?")                                     # the SIM is still starting
    h.expect(b"AT+CPIN?\r" + line(b"+CME ERROR: 14"))
    vm.net.sim_ready_at = 0                               # ... and now it is up
    h.cmd("AT+CPIN?")
    h.expect(b"AT+CPIN?\r" + ok(b"+CPIN: READY"))
    got = h.until(b"+NITZ: ", 10)                         # attach_after: 2 s on this family
    assert got == line(b"^MODE: 17,17") + line(b"+E_UTRAN Service") + line(b"+CGEV: ME PDN ACT 1") + b"\r\n+NITZ: "
    assert re.fullmatch(rb"\d{4}/\d\d/\d\d,\d\d:\d\d:\d\d\+0,0\r\n", h.until(b"\r\n"))
    h.cmd("AT+CGATT?")
    h.expect(b"AT+CGATT?\r" + ok(b"+CGATT: 1"))


def test_flight_mode(host):
    vm, h = host(bearer=False, personality="air780e", attach_after=0)
    h.cmd("AT+CFUN=4")
    h.expect(ok() + line(b"+CGEV: ME DETACH"))
    h.cmd("AT+CFUN?")
    h.expect(ok(b"+CFUN: 4"))
    h.cmd("AT+CGATT?")
    h.expect(ok(b"+CGATT: 0"))
    h.cmd("AT+CFUN=1")
    h.expect(ok() + line(b"^MODE: 17,17") + line(b"+E_UTRAN Service") + line(b"+CGEV: ME PDN ACT 1"))
    assert re.fullmatch(rb"\r\n\+NITZ: \d{4}/\d\d/\d\d,\d\d:\d\d:\d\d\+0,0\r\n", h.until(b",0\r\n"))
    h.cmd("AT+CGATT?")
    h.expect(ok(b"+CGATT: 1"))
    vm, h = host(bearer=False, personality="air780ep", attach_after=0)
    h.cmd("AT+CFUN=0")                                    # the Air780EP's guide shows no URC
    h.expect(ok())
    h.cmd("AT+CFUN=1")
    h.expect(ok() + line(b"^MODE: 17,17") + line(b"+E_UTRAN Service") + line(b"+CGEV: ME PDN ACT 1"))
    assert re.fullmatch(rb"\r\n\+NITZ: \d\d/\d\d/\d\d,\d\d:\d\d:\d\d\+32,0\r\n", h.until(b",0\r\n"))
    vm, h = host(bearer=False)                            # an Air724 says nothing more
    h.cmd("AT+CFUN=0")
    h.expect(ok())
    h.quiet()
    h.cmd("AT+CGATT?")
    h.expect(ok(b"+CGATT: 0"))


def test_mqtt_without_the_bearer_on_an_air780_only(host):
    vm, h = host(bearer=False, personality="air780e", attach_after=0)
    mqtt_up(h, tls=False)                                 # the default PDP context carries it
    vm.pdp_loss(down=0)                                   # this family's URC, and no CLOSED
    h.until(line(b"+CGEV: NW PDN DEACT 1"), 3)
    h.quiet()
    h.cmd("AT+MIPCLOSE")
    h.expect(ok())
    vm, h = host(bearer=False)
    cid, user, pw = direct_creds(3)
    h.cmd('AT+MCONFIG="%s","%s","%s"' % (cid, user, pw))
    h.expect(ok())
    h.cmd('AT+MIPSTART="%s",1883' % BROKER_HOST)          # an Air724 needs AT+SAPBR=1,1 first
    h.expect(ok() + line(b"STATE: IP INITIAL") + line(b"CONNECT FAIL"), 5)


def test_downlinks_longer_than_the_family_delivers_are_lost(cloud, host):
    for name, limit in (("air724ug", 1360), ("air780ep", 4100)):
        vm, h = host(personality=name, attach_after=0)
        mqtt_up(h)
        h.cmd("AT+MQTTMSGSET=0")
        h.expect(ok())
        h.cmd('AT+MSUB="%s",0' % GET)
        h.expect(ok() + line(b"SUBACK"), 5)
        cloud.publish(GET, b"x" * (limit + 1), 0)
        cloud.publish(GET, b"y" * limit, 0)
        head = b'\r\n+MSUB: "' + GET.encode() + b'",%d byte,' % limit
        h.expect(head + b"y" * limit + b"\r\n", 5)
        assert vm.stats["downlinks_lost"] == 1 and vm.stats["downlinks"] == 1


def test_verified_tls_takes_the_local_cloud_and_refuses_another_ca(cloud, host):
    vm, h = host(personality="air780e", auths_url=cloud.auths_url, attach_after=0)
    trust(h, read_pem(cloud.ca_file))
    mqtt_up(h)                                            # the broker's certificate verifies
    assert vm.handshakes == [(88, BROKER_HOST, True, None)]
    h.cmd("AT+MDISCONNECT")
    h.expect(ok())
    h.cmd("AT+MIPCLOSE")
    h.expect(ok())

    trust(h, read_pem(cloud.rogue_ca_file))               # a CA that did not issue it
    h.cmd('AT+SSLMIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"STATE: TCP CLOSED") + line(b"CONNECT FAIL"), 5)
    ctx, name, verified, error = vm.handshakes[-1]
    assert (ctx, name, verified) == (88, BROKER_HOST, True) and error.startswith("certificate:")

    trust(h, read_pem(cloud.ca_file))                     # the right CA, the wrong name
    h.cmd('AT+SSLCFG="hostname",88,"mqtt.example.com"')
    h.expect(ok())
    h.cmd('AT+SSLMIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"STATE: TCP CLOSED") + line(b"CONNECT FAIL"), 5)
    assert vm.handshakes[-1][1] == "mqtt.example.com" and "certificate" in vm.handshakes[-1][3]

    h.cmd('AT+SSLCFG="hostname",88,')
    h.expect(ok())
    h.cmd('AT+FSDEL="%s"' % CA_FILE)                      # verification on, nothing to verify with
    h.expect(ok())
    h.cmd('AT+SSLMIPSTART="%s",1883' % BROKER_HOST)
    h.expect(ok() + line(b"STATE: TCP CLOSED") + line(b"CONNECT FAIL"), 5)
    assert "missing" in vm.handshakes[-1][3]

    h.cmd('AT+SSLCFG="seclevel",88,0')                    # seclevel 0: TLS that checks nothing
    h.expect(ok())
    mqtt_up(h)
    assert vm.handshakes[-1] == (88, BROKER_HOST, False, None)


def https_post(h, body=b"x=1"):
    h.cmd("AT+HTTPINIT")
    h.expect(ok())
    h.cmd('AT+HTTPPARA="URL","%s"' % AUTH)
    h.expect(ok())
    h.cmd("AT+HTTPDATA=%d,10000" % len(body))
    h.expect(line(b"DOWNLOAD"))
    h.send(body)
    h.expect(ok())
    h.cmd("AT+HTTPACTION=1")
    h.expect(ok())
    urc = h.until(b"\r\n", 10) + h.until(b"\r\n", 10)
    h.cmd("AT+HTTPTERM")
    h.expect(ok())
    return urc


def test_verified_https_takes_the_auth_server_and_refuses_another_ca(cloud, host):
    vm, h = host(personality="air780ep", auths_url=cloud.auths_url, attach_after=0)
    before = cloud.stats()["auth"]
    trust(h, read_pem(cloud.ca_file), ctx=153)
    assert re.fullmatch(rb"\r\n\+HTTPACTION: 1,200,\d+\r\n", https_post(h))
    assert vm.handshakes == [(153, "iot-auth.cn-shanghai.aliyuncs.com", True, None)]
    trust(h, read_pem(cloud.rogue_ca_file), ctx=153)
    assert https_post(h) == line(b"+HTTPACTION: 1,605,0")  # the TLS channel was not set up
    assert vm.handshakes[-1][2] is True and vm.handshakes[-1][3].startswith("certificate:")
    after = cloud.stats()["auth"]
    assert after["requests"] - before["requests"] == 1     # the refused one never got there
    assert after["tls_refused"] - before["tls_refused"] == 1

    vm, h = host(personality="air780ep", attach_after=0)  # no HTTPS endpoint to verify: refused
    trust(h, read_pem(cloud.ca_file), ctx=153)
    assert https_post(h) == line(b"+HTTPACTION: 1,605,0")


def test_cli_plays_the_family_asked_for():
    p = subprocess.Popen([sys.executable, "-m", "tools.sim", "--personality", "air780ep", "--attach-after", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        port = int(p.stdout.readline().decode().strip().rpartition(":")[2])
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b'AT\rAT+CGMR\rAT+SSLCFG="seclevel",88,1\r')
        want = (b'AT\r\r\nOK\r\nAT+CGMR\r\r\n+CGMR: "AirM2M_780EP_V1007_LTE_AT"\r\n\r\nOK\r\n'
                b'AT+SSLCFG="seclevel",88,1\r\r\nOK\r\n')
        got = b""
        s.settimeout(3)
        while len(got) < len(want):
            got += s.recv(4096)
        assert got == want
        s.close()
    finally:
        p.terminate()
        assert p.wait(5) == 0
        p.stdout.close()
        p.stderr.close()
