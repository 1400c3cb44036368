# REPL diagnostics (firmware/diag.py) against the scripted UART, under both interpreters:
# what report() shows, at() raw replies, check() stopping at the first failing step with the
# hint for that step, the bridge, and the device secret never printed by any of them.
from fwtest import LogCapture, StubUART

from firmware import aliyun, config, diag, log
from firmware.air72x import Air72x

SECRET = "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
PSECRET = "ProductSecretNeverShown00000001"
OK = b"\r\nOK\r\n"


def reply(*lines):
    return b"".join(b"\r\n" + x + b"\r\n" for x in lines) + OK


def cfg(**kw):
    c = {"product_key": "b0FMK1Ga5cp", "device_name": "862991419835241", "device_secret": SECRET,
         "product_secret": PSECRET}
    c.update(kw)
    return config.check(c)


class Output:
    """diag's out= sink plus the firmware log, in one place."""

    def __init__(self):
        self.lines = []
        self.log = LogCapture()
        self._old = log.sink
        log.sink = self.log.write

    def __call__(self, line):
        assert isinstance(line, str), line
        self.lines.append(line)

    def close(self):
        log.sink = self._old

    def text(self):
        return "\n".join(self.lines)

    def everything(self):
        return self.text() + "\n" + self.log.text()


def run(fn, script, **kw):
    uart = StubUART(script, strict=bool(script))  # no script: a silent module
    modem = Air72x(uart)
    out = Output()
    try:
        result = fn(out=out, modem=modem, **kw)
    finally:
        out.close()
    text = out.everything()
    assert SECRET not in text and PSECRET not in text, text
    return uart, out, result


HEALTHY = [
    (b"AT\r", OK),
    (b"AT+CGMR\r", reply(b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"')),
    (b"AT+CGSN\r", reply(b"866714043075174")),
    (b"AT+ICCID\r", reply(b"+ICCID: 89860425102180123456")),
    (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
    (b"AT+CSQ\r", reply(b"+CSQ: 20,99")),
    (b"AT+CREG?\r", reply(b"+CREG: 0,1")),
    (b"AT+CEREG?\r", reply(b"+CEREG: 0,5")),
    (b"AT+CGATT?\r", reply(b"+CGATT: 1")),
    (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
    (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :1")),
]


class FakeLink:
    def stats(self):
        return {"state": "up", "reconnects": 2, "sent": 7, "acked": 7, "faults": {"closed": 2}, "outbox": 0}


# ------------------------------------------------------------------ readings
def test_signal_reading():
    assert diag.dbm(0) == -113 and diag.dbm(20) == -73 and diag.dbm(31) == -51
    assert diag.dbm(99) is None
    words = [diag.signal_words(r) for r in (99, 0, 1, 5, 9, 10, 14, 15, 19, 20, 31)]
    assert words == ["unknown (no signal measured)", "none", "none", "poor", "poor", "fair", "fair",
                     "good", "good", "excellent", "excellent"], words
    assert diag.signal_text(20) == "rssi 20 = -73 dBm (excellent)"
    assert diag.signal_text(31) == "rssi 31 = >= -51 dBm (excellent)"
    assert "unknown" in diag.signal_text(99)


# ------------------------------------------------------------------ report()
def test_report_shows_module_network_firmware_and_masked_config():
    uart, out, _ = run(diag.report, list(HEALTHY), cfg=cfg(), link=FakeLink())
    assert uart.done()
    t = out.text()
    for want in (
        "AirM2M_Air724UG_V409_LTE_AT (V409)",
        "IMEI       866714043075174",
        "ICCID      89860425102180123456",
        "SIM        READY",
        "rssi 20 = -73 dBm (excellent), ber 99",
        "CREG       stat 1 (registered, home network)",
        "CEREG      stat 5 (registered, roaming)",
        "attached (+CGATT: 1)",
        "up, IP 10.159.1.145",
        "MQTT       1 (connected)",
        "link       state up",
        "reconnects 2",
        "device_secret ****",
        "product_secret ****",
        "product_key b0FMK1Ga5cp",
    ):
        assert want in t, (want, t)


def test_report_iccid_fallback_old_firmware_no_sim_no_link():
    script = [
        (b"AT\r", OK),
        (b"AT+CGMR\r", reply(b'+CGMR: "AirM2M_Air724UG_V308_LTE_AT"')),
        (b"AT+CGSN\r", reply(b"866714043075174")),
        (b"AT+ICCID\r", b"\r\nERROR\r\n"),
        (b"AT+CCID\r", b"\r\n+CME ERROR: 10\r\n"),
        (b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n"),
        (b"AT+CSQ\r", reply(b"+CSQ: 99,99")),
        (b"AT+CREG?\r", reply(b"+CREG: 0,0")),
        (b"AT+CEREG?\r", reply(b"+CEREG: 0,3")),
        (b"AT+CGATT?\r", reply(b"+CGATT: 0")),
        (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,3,"0.0.0.0"')),
        (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :0")),
    ]
    uart, out, _ = run(diag.report, script, cfg=cfg())
    assert uart.done()
    t = out.text()
    for want in ("V308_LTE_AT: TOO OLD", "Luatools", "ICCID      ERROR", "+CME ERROR: 10 (no SIM card)",
                 "unknown (no signal measured)", "stat 0 (not registered, not searching)",
                 "stat 3 (registration denied)", "NOT attached", "closed, IP 0.0.0.0",
                 "0 (offline)", "link       not running"):
        assert want in t, (want, t)


def test_report_when_the_module_does_not_answer():
    uart, out, _ = run(diag.report, [], cfg=cfg())
    t = out.text()
    assert "NO REPLY to AT" in t and "crossed" in t and "level shifter" in t, t
    assert "IMEI" not in t  # nothing else is asked of a silent module
    assert "device_secret ****" in t
    assert bytes(uart.written) == b"AT\r" * 3


# ------------------------------------------------------------------ at()
def test_at_prints_the_raw_reply():
    uart, out, lines = run(diag.at, [(b"AT+CSQ\r", reply(b"+CSQ: 17,99"))], cmd="AT+CSQ")
    assert out.lines == ["+CSQ: 17,99", "OK"], out.lines
    assert lines == ["+CSQ: 17,99", "OK"]
    # +CPIN is also a URC prefix: a command's own reply is still shown as its reply
    uart, out, _ = run(diag.at, [(b"AT+CPIN?\r", reply(b"+CPIN: READY"))], cmd="AT+CPIN?")
    assert out.lines == ["+CPIN: READY", "OK"], out.lines
    uart, out, _ = run(diag.at, [(b"ATI\r", reply(b"AirM2M_Air724UG_V409_LTE_AT"))], cmd="ATI")
    assert out.lines == ["AirM2M_Air724UG_V409_LTE_AT", "OK"], out.lines
    uart, out, _ = run(diag.at, [(b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n")], cmd="AT+CPIN?")
    assert out.lines == ["+CME ERROR: 10"], out.lines
    uart, out, _ = run(diag.at, [], cmd="AT", timeout=50)
    assert out.lines == ["(no final result within 50 ms)"], out.lines


def test_at_masks_a_secret_the_module_prints_back():
    line = ('+MCONFIG: "c","u","%s"' % SECRET).encode()
    uart, out, _ = run(diag.at, [(b"AT+MCONFIG?\r", reply(line))], cmd="AT+MCONFIG?", cfg=cfg())
    assert out.lines == ['+MCONFIG: "c","u","****"', "OK"], out.lines


# ------------------------------------------------------------------ check()
def connect_script(c, connack=b"\r\nCONNACK OK\r\n", connect=b"\r\nCONNECT OK\r\n"):
    cid, user, password, host, port = aliyun.credentials(None, c)
    return [
        (b"AT+MQTTSTATU\r", reply(b"+MQTTSTATU :0")),
        (('AT+MCONFIG="%s","%s","%s"\r' % (cid, user, password)).encode(), OK),
        (('AT+SSLMIPSTART="%s",%d\r' % (host, port)).encode(), [OK, connect]),
        (b"AT+MCONNECT=1,300\r", [OK, connack]),
    ]


def passing_script(c):
    return [
        (b"AT\r", OK),
        (b"AT+CGMR\r", reply(b'+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"')),
        (b"AT+CPIN?\r", reply(b"+CPIN: READY")),
        (b"AT+CSQ\r", reply(b"+CSQ: 12,99")),
        (b"AT+CEREG?\r", reply(b"+CEREG: 0,1")),
        (b"AT+CGATT?\r", reply(b"+CGATT: 1")),
        (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,3,"0.0.0.0"')),
        (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
        (b'AT+SAPBR=3,1,"APN","CMIIOT"\r', OK),
        (b"AT+SAPBR=1,1\r", OK),
        (b"AT+SAPBR=2,1\r", reply(b'+SAPBR: 1,1,"10.159.1.145"')),
    ] + connect_script(c) + [
        (b"AT+MQTTMSGSET=0\r", OK),
        (b"AT+MDISCONNECT\r", OK),
        (b"AT+MIPCLOSE\r", OK),
    ]


def test_check_passes_every_step():
    c = cfg()
    uart, out, failed = run(diag.check, passing_script(c), cfg=c)
    assert failed is None, out.text()
    assert uart.done()
    passes = [x for x in out.lines if x.startswith("PASS")]
    assert len(passes) == 8, out.text()
    assert [x.split(". ", 1)[1].split(":")[0] for x in passes] == [
        "module answers AT", "module firmware >= V409", "SIM card", "signal", "network registration",
        "packet attach", "bearer (APN)", "MQTT connect with the configured device"]
    assert "rssi 12 = -89 dBm (fair)" in out.text()
    assert "IP 10.159.1.145" in out.text() and "CONNACK OK" in out.text()
    assert out.lines[-1] == "all 8 steps passed"
    assert not [x for x in out.lines if x.startswith("FAIL")]


def failing(c, upto, tail):
    """The passing script cut after `upto` exchanges, then `tail`."""
    return passing_script(c)[:upto] + tail


def check_fails(script, step, hint, c=None, **kw):
    c = c or cfg()
    uart, out, failed = run(diag.check, script, cfg=c, **kw)
    assert failed == step, (failed, out.text())
    fails = [x for x in out.lines if x.startswith("FAIL")]
    assert len(fails) == 1 and (". %s:" % step) in fails[0], out.text()
    i = out.lines.index(fails[0])
    assert out.lines[i + 1].startswith("     check: ") and hint in out.lines[i + 1], (hint, out.text())
    assert out.lines[-1].startswith("stopped at step"), out.text()
    assert uart.done(), "check() went on after the failing step"
    # nothing was sent after the failing step's own commands
    assert not [x for x in out.lines[i + 2 : -1] if x.startswith(("PASS", "FAIL"))]
    return out


def test_check_stops_at_the_first_failure_with_its_hint():
    c = cfg()
    out = check_fails([], "module answers AT", "TX->RX and RX->TX crossed")
    check_fails([(b"AT\r", OK), (b"AT+CGMR\r", reply(b'+CGMR: "AirM2M_Air724UG_V308_LTE_AT"'))],
                "module firmware >= V409", "Luatools")
    check_fails(failing(c, 2, [(b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n")]), "SIM card", "insert a SIM")
    check_fails(failing(c, 3, [(b"AT+CSQ\r", reply(b"+CSQ: 99,99"))]), "signal", "antenna")
    out = check_fails(failing(c, 4, [(b"AT+CEREG?\r", reply(b"+CEREG: 0,3"))]), "network registration", "activated")
    assert "registration denied" in out.text()
    check_fails(failing(c, 5, [(b"AT+CGATT?\r", reply(b"+CGATT: 0"))]), "packet attach", "data plan",
                attach_ms=0)
    out = check_fails(failing(c, 9, [(b"AT+SAPBR=1,1\r", b"\r\n+CME ERROR: 767\r\n")]), "bearer (APN)", '"apn"')
    assert "CMIIOT" in out.text()


def test_check_mqtt_failures_name_the_right_cause():
    c = cfg()
    script = failing(c, 11, connect_script(c, connack=b"\r\nERROR\r\n"))
    out = check_fails(script, "MQTT connect with the configured device", "refused the MQTT CONNECT")
    assert "device_secret" in out.lines[-2] and "enabled" in out.lines[-2]
    script = failing(c, 11, connect_script(c)[:3])
    script[-1] = (script[-1][0], [OK, b"\r\nSTATE: IP INITIAL\r\n\r\nCONNECT FAIL\r\n"])
    out = check_fails(script, "MQTT connect with the configured device", "mqtt_host")
    assert "CONNECT FAIL" in out.text()


def test_check_stops_before_mqtt_when_asked():
    c = cfg()
    uart, out, failed = run(diag.check, passing_script(c)[:11], cfg=c, connect=False)
    assert failed is None and uart.done() and out.lines[-1] == "all 7 steps passed", out.text()


def test_secret_is_masked_whatever_prints_it():
    w = diag._Out(None, cfg())
    got = []
    w.out = got.append
    w("the secret %s and %s" % (SECRET, PSECRET))
    assert got == ["the secret **** and ****"], got


# ------------------------------------------------------------------ bridge()
class Keys:
    def __init__(self, *items):
        self.items = list(items)  # bytes, or an int: that many reads with nothing typed

    def read(self):
        while self.items:
            item = self.items[0]
            if isinstance(item, int):
                if item:
                    self.items[0] = item - 1
                    return None
                self.items.pop(0)
                continue
            return self.items.pop(0)
        return b"\x1d"


def test_bridge_passes_bytes_both_ways_until_ctrl_bracket():
    uart = StubUART([(b"AT+CSQ\r", reply(b"+CSQ: 20,99")), (b"ATI\r", reply(b"AirM2M"))])
    modem = Air72x(uart)
    shown = []
    diag.bridge(modem=modem, keys=Keys(b"AT+", b"CSQ\r", 5, b"ATI\r\x1dignored"), write=shown.append, echo=True)
    text = b"".join(shown)
    assert bytes(uart.written) == b"AT+CSQ\rATI\r"
    assert b"AT+CSQ\r\n" in text and b"+CSQ: 20,99" in text, text
    assert b"ignored" not in text
    assert text.endswith(b"bridge closed\r\n")
