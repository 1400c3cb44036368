# The Air72x driver against the scripted stub UART, under CPython and MicroPython alike.
# Replies follow the forms of docs/at-dialect.md (the vendor manual's and published logs' bytes); every test checks
# the exact bytes the driver wrote to the UART.
from fwtest import StubUART, capture_log, msub, raises, raises_kind, release_log

from firmware.air72x import MPUB_MAX, PAYLOAD_MAX, Air72x, escape
from firmware.errors import ATAbort, ATError, ModemError

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
V409 = b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"'
DN = b"/pk/dn/user/get"
UP = "/pk/dn/user/update"
TRICKY = b'{"cmd":"a,b",\r\n"q":"\\"x\\""}\r\nOK\r\n'  # CR, LF, commas, quotes, a fake OK

# Aliyun-style credentials (the seed's direct-connect example)
CID = "866714043075174|securemode=3,signmethod=hmacsha1|"
USER = "866714043075174&a1mxL3s6Z7m"
PASSWORD = "B1107184D60649B62ECF56F0E7E98E7B3772A3E7"
HOST = "a1mxL3s6Z7m.iot-as-mqtt.cn-shanghai.aliyuncs.com"
MCONFIG = b'AT+MCONFIG="' + CID.encode() + b'","' + USER.encode() + b'","' + PASSWORD.encode() + b'"\r'
SSLSTART = b'AT+SSLMIPSTART="' + HOST.encode() + b'",1883\r'
TCPSTART = b'AT+MIPSTART="' + HOST.encode() + b'",1883\r'


def lines(*items):
    """Each line wrapped \\r\\n<line>\\r\\n as the module sends it."""
    return b"".join(b"\r\n" + i + b"\r\n" for i in items)


def modem(script, chunk=0, connected=False, version=None):
    uart = StubUART(script, chunk=chunk)
    m = Air72x(uart)
    m.mqtt_connected = connected
    if version is not None:
        m.version = "AirM2M_Air724UG_V%d_LTE_AT" % version
        m.version_number = version
    return uart, m


def recorder(m):
    """Attach on_message/on_event handlers that record their calls."""
    got = []
    m.on_message = lambda topic, payload: got.append(("msg", topic, payload))
    m.on_event = lambda name, detail: got.append(("event", name, detail))
    return got


def drain(uart, m):
    """poll() until the stub has nothing left to give (poll reads a bounded amount)."""
    for _ in range(10000):
        if not uart.any() and uart.done():
            break
        m.poll()
    m.poll()


def write_index(uart, data):
    for i, (_, d) in enumerate(uart.writes):
        if d == data:
            return i
    raise AssertionError("%r was never written" % data)


# ---------------------------------------------------------------------------- bring-up
def test_start_with_echo_on_then_cgatt_polling():
    script = [
        (b"AT\r", b"AT\r\r\n" + OK),  # echo is on after power-up
        (b"ATE0\r", b"ATE0\r\r\n" + OK),
        (b"AT+CGMR\r", lines(V409) + OK),
        (b"AT+CPIN?\r", lines(b"+CPIN: READY") + OK),
        (b"AT+CSQ\r", lines(b"+CSQ: 20,99") + OK),
        (b"AT+CGATT?\r", lines(b"+CGATT: 0") + OK),
        (b"AT+CGATT?\r", lines(b"+CGATT: 1") + OK),
    ]
    cap = capture_log()
    try:
        uart, m = modem(script)
        m.start()
    finally:
        release_log()
    assert bytes(uart.written) == b"AT\rATE0\rAT+CGMR\rAT+CPIN?\rAT+CSQ\rAT+CGATT?\rAT+CGATT?\r"
    assert uart.done()
    assert m.version == "AirM2M_Air724UG_V409_LTE_AT" and m.version_number == 409
    assert "AirM2M_Air724UG_V409_LTE_AT" in cap.text() and "signal 20" in cap.text()


def test_autobaud_silence_then_ok():
    script = [(b"AT\r", b""), (b"AT\r", b""), (b"AT\r", OK)]
    uart, m = modem(script)
    m.autobaud(tries=5)
    assert bytes(uart.written) == b"AT\r" * 3 and uart.done()


def test_autobaud_half_trained_error_then_ok():
    uart, m = modem([(b"AT\r", ERROR), (b"AT\r", b"AT\r\r\n" + OK)])
    m.autobaud(tries=3)
    assert bytes(uart.written) == b"AT\rAT\r" and uart.done()


def test_autobaud_never_answers_is_bounded_with_a_clear_message():
    uart, m = modem([(b"AT\r", b"")] * 3)
    e = raises(ModemError, m.autobaud, 3)
    assert bytes(uart.written) == b"AT\r" * 3
    text = str(e)
    assert "does not answer AT" in text and "3 tries" in text and "wiring" in text


def test_autobaud_rdy_while_coming_up_is_not_fatal():
    # a module powering up prints RDY (and +CPIN: READY) right when the host starts asking
    script = [(b"AT\r", lines(b"RDY")), (b"AT\r", lines(b"+CPIN: READY") + b"AT\r\r\n" + OK)]
    uart, m = modem(script)
    got = recorder(m)
    m.autobaud(tries=3)
    assert bytes(uart.written) == b"AT\rAT\r" and uart.done()
    m.poll()
    assert got == [("event", "reboot", "RDY")]


def test_cgmr_quoted_form():
    uart, m = modem([(b"AT+CGMR\r", lines(V409) + OK)])
    assert m.check_version() == "AirM2M_Air724UG_V409_LTE_AT"
    assert m.version_number == 409


def test_cgmr_bare_form_as_in_the_seed():
    uart, m = modem([(b"AT+CGMR\r", lines(b"AirM2M_Air72xUy_V409_LTE_AT") + OK)])
    assert m.check_version() == "AirM2M_Air72xUy_V409_LTE_AT"
    assert m.version_number == 409


def test_cgmr_newer_build_number():
    reply = b"AT+CGMR\r\r\n" + lines(b'+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"') + OK  # echo on
    uart, m = modem([(b"AT+CGMR\r", reply)])
    assert m.check_version() == "AirM2M_Air724UG_V401853_LTE_AT"
    assert m.version_number == 401853


def test_old_firmware_is_a_version_error_naming_it():
    for v in (b"V401", b"V300"):
        text = b"AirM2M_Air724UG_" + v + b"_LTE_AT"
        uart, m = modem([(b"AT+CGMR\r", lines(b'+CGMR: "' + text + b'"') + OK)])
        e = raises_kind("version", m.check_version)
        assert text.decode() in str(e), str(e)
        assert "409" in str(e)
    uart, m = modem([(b"AT+CGMR\r", lines(b"AirM2M_Air72xUy_V300_LTE_AT") + OK)])
    assert "AirM2M_Air72xUy_V300_LTE_AT" in str(raises_kind("version", m.check_version))


def test_an_unknown_module_works_with_the_conservative_set_and_says_so_once():
    cap = capture_log()
    try:
        script = [(b"AT+CGMR\r", lines(b'+CGMR: "SOMETHING_ELSE"') + OK)] * 2
        uart, m = modem(script)
        assert m.check_version() == "SOMETHING_ELSE" and m.check_version() == "SOMETHING_ELSE"
        assert m.family()[1] == "unknown"
        assert cap.text().count("unknown module") == 1
    finally:
        release_log()
    m.mqtt_connected = True
    e = raises(ValueError, m.mqtt_publish, UP, b"\x00binary")  # no AT+MPUBEX on an unknown module
    assert "MPUBEX" in str(e)


def test_families_are_told_apart_by_their_version_strings():
    for version, name, mpubex in (
        (b"AirM2M_Air724UG_V401853_LTE_AT", "Air72x", True),
        (b"AirM2M_720U_V401875_LTE_AT", "Air72x", True),
        (b"AirM2M_780E_V1161_LTE_AT", "Air780", True),
        (b"AirM2M_780EP_V1007_LTE_AT", "Air780", True),
        (b"AirM2M_780EG_V1174_LTE_AT", "Air780", True),
        (b"AirM2M_Air724UG_V409_LTE_AT", "Air72x", False),
    ):
        uart, m = modem([(b"AT+CGMR\r", lines(b'+CGMR: "' + version + b'"') + OK)])
        m.check_version()
        assert m.family()[1] == name, version
        m.mqtt_connected = True
        if not mpubex:
            raises(ValueError, m.mqtt_publish, UP, b"\x00")


def test_start_stops_at_old_firmware():
    script = [
        (b"AT\r", OK),
        (b"ATE0\r", OK),
        (b"AT+CGMR\r", lines(b'+CGMR: "AirM2M_Air724UG_V401_LTE_AT"') + OK),
    ]
    uart, m = modem(script)
    e = raises_kind("version", m.start)
    assert "V401" in str(e)
    assert bytes(uart.written) == b"AT\rATE0\rAT+CGMR\r"


def test_missing_sim_is_a_sim_error():
    uart, m = modem([(b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n")])
    e = raises_kind("sim", m.check_sim)
    assert "SIM" in str(e)
    assert bytes(uart.written) == b"AT+CPIN?\r"


def test_start_stops_at_missing_sim():
    script = [
        (b"AT\r", OK),
        (b"ATE0\r", OK),
        (b"AT+CGMR\r", lines(V409) + OK),
        (b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n"),
    ]
    uart, m = modem(script)
    raises_kind("sim", m.start)
    assert bytes(uart.written) == b"AT\rATE0\rAT+CGMR\rAT+CPIN?\r"


def test_sim_ready_twice_and_sim_pin():
    uart, m = modem([(b"AT+CPIN?\r", lines(b"+CPIN: READY", b"+CPIN: READY") + OK)])
    m.check_sim()
    uart, m = modem([(b"AT+CPIN?\r", lines(b"+CPIN: SIM PIN") + OK)])
    assert "SIM PIN" in str(raises_kind("sim", m.check_sim))


def test_csq_with_and_without_space():
    for line in (b"+CSQ: 20,99", b"+CSQ:20,99"):
        uart, m = modem([(b"AT+CSQ\r", lines(line) + OK)])
        assert m.signal() == (20, 99)
        assert bytes(uart.written) == b"AT+CSQ\r"
    uart, m = modem([(b"AT+CSQ\r", lines(b"+CSQ: 99,99") + OK)])
    assert m.signal() == (99, 99)


def test_attach_timeout_is_a_modem_error():
    uart, m = modem([(b"AT+CGATT?\r", lines(b"+CGATT: 0") + OK)])
    e = raises(ModemError, m.wait_attach, 0)
    assert "not attached" in str(e)
    assert bytes(uart.written) == b"AT+CGATT?\r"


def test_attached_reads_cgatt():
    uart, m = modem([(b"AT+CGATT?\r", lines(b"+CGATT: 1") + OK), (b"AT+CGATT?\r", lines(b"+CGATT: 0") + OK)])
    assert m.attached() is True
    assert m.attached() is False


# ---------------------------------------------------------------------------- bearer
def bearer_script(open_reply, ip_line):
    return [
        (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
        (b'AT+SAPBR=3,1,"APN","CMIIOT"\r', OK),
        (b"AT+SAPBR=1,1\r", open_reply),
        (b"AT+SAPBR=2,1\r", lines(ip_line) + OK),
    ]


BEARER_WRITES = b'AT+SAPBR=3,1,"CONTYPE","GPRS"\rAT+SAPBR=3,1,"APN","CMIIOT"\rAT+SAPBR=1,1\rAT+SAPBR=2,1\r'


def test_bearer_open_exact_bytes_and_quoted_ip():
    uart, m = modem(bearer_script(OK, b'+SAPBR: 1,1,"10.159.1.145"'))
    assert m.bearer_open("CMIIOT") == "10.159.1.145"
    assert bytes(uart.written) == BEARER_WRITES and uart.done()
    assert m.bearer_up


def test_bearer_already_open_cme_3_is_success_and_unquoted_padded_ip():
    uart, m = modem(bearer_script(b"\r\n+CME ERROR: 3\r\n", b"+SAPBR: 1,1,010.159.001.145"))
    assert m.bearer_open("CMIIOT") == "10.159.1.145"
    assert bytes(uart.written) == BEARER_WRITES and m.bearer_up


def test_bearer_closed_padded_zero_address_reads_as_zero():
    uart, m = modem([(b"AT+SAPBR=2,1\r", lines(b"+SAPBR: 1,3,000.000.000.000") + OK)])
    assert m.bearer_ip() == "0.0.0.0"


def test_bearer_open_other_error_raises():
    script = bearer_script(b"\r\n+CME ERROR: 767\r\n", b"")[:3]
    uart, m = modem(script)
    assert raises(ATError, m.bearer_open, "CMIIOT").code == 767
    assert not m.bearer_up


def test_bearer_empty_apn_and_bad_apn():
    script = [
        (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
        (b'AT+SAPBR=3,1,"APN",""\r', OK),
        (b"AT+SAPBR=1,1\r", OK),
        (b"AT+SAPBR=2,1\r", lines(b'+SAPBR: 1,1,"10.0.0.2"') + OK),
    ]
    uart, m = modem(script)
    assert m.bearer_open(None) == "10.0.0.2"
    uart, m = modem([])
    e = raises(ValueError, m.bearer_open, 'CM"IOT')
    assert "apn" in str(e)
    assert bytes(uart.written) == b""


def test_sapbr_deact_during_ip_query_is_an_event_not_the_answer():
    reply = lines(b"+SAPBR 1: DEACT", b'+SAPBR: 1,1,"10.159.1.145"') + OK
    uart, m = modem([(b"AT+SAPBR=2,1\r", reply)])
    got = recorder(m)
    m.bearer_up = True
    assert m.bearer_ip() == "10.159.1.145"
    assert not m.bearer_up
    m.poll()
    assert got == [("event", "pdp_deact", "+SAPBR 1: DEACT")]


# ---------------------------------------------------------------------------- HTTP
URL = "https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"
BODY = b"productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0&clientId=862991419835241&deviceName=862991419835241"
ANSWER = b'{"code":200,"data":{"iotId":"jlvFGfQ11FIGOEJ4RoZU001013ba00",\r\nOK\r\n"iotToken":"613d9cb0946741df98db1c50255a9dd0"},"message":"success"}'
HTTP_PARA = (
    b'AT+HTTPPARA="URL","' + URL.encode() + b'"\r',
    b'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"\r',
)


def http_script(body, status, answer, action_extra=b""):
    n = str(len(answer)).encode()
    script = [
        (b"AT+HTTPINIT\r", OK),
        (HTTP_PARA[0], OK),
        (HTTP_PARA[1], OK),
        (b"AT+HTTPDATA=" + str(len(body)).encode() + b",20000\r", [2, b"\r\nDOWNLOAD\r\n"]),
        (body, [1, OK]),
        (b"AT+HTTPACTION=1\r", [OK, 3, action_extra + lines(b"+HTTPACTION: 1," + str(status).encode() + b"," + n)]),
    ]
    if answer:
        script.append((b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: " + n + b"\r\n" + answer + OK))
    script.append((b"AT+HTTPTERM\r", OK))
    return script


def http_writes(body, read=True):
    return (
        b"AT+HTTPINIT\r"
        + HTTP_PARA[0]
        + HTTP_PARA[1]
        + b"AT+HTTPDATA="
        + str(len(body)).encode()
        + b",20000\r"
        + body
        + b"AT+HTTPACTION=1\r"
        + (b"AT+HTTPREAD\r" if read else b"")
        + b"AT+HTTPTERM\r"
    )


def test_http_post_exact_sequence_and_counted_read():
    script = http_script(BODY, 200, ANSWER)
    uart, m = modem(script)
    status, data = m.http_post(URL, BODY)
    assert (status, data) == (200, ANSWER)
    assert bytes(uart.written) == http_writes(BODY)
    assert uart.done()
    assert len(BODY) == 112  # the seed's HTTPDATA=112
    # the body was written only after DOWNLOAD had been read, and nothing before it
    i = write_index(uart, BODY)
    assert uart.writes[i - 1][1] == b"AT+HTTPDATA=112,20000\r"
    assert uart.writes[i][0] == len(OK) * 3 + len(b"\r\nDOWNLOAD\r\n")


def test_http_post_str_body_uses_byte_length():
    text = "name=温度&v=25°C"
    body = text.encode()
    assert len(body) != len(text)
    uart, m = modem(http_script(body, 200, b"ok"))
    assert m.http_post(URL, text) == (200, b"ok")
    assert b"AT+HTTPDATA=%d,20000\r" % len(body) in bytes(uart.written)
    assert bytes(uart.written) == http_writes(body)


def test_http_status_reaches_the_caller_with_body():
    answer = b'{"code":401,"message":"auth failed"}'
    uart, m = modem(http_script(BODY, 401, answer))
    assert m.http_post(URL, BODY) == (401, answer)
    assert bytes(uart.written).endswith(b"AT+HTTPREAD\rAT+HTTPTERM\r")


def test_http_empty_answer_is_not_read():
    uart, m = modem(http_script(BODY, 204, b""))
    assert m.http_post(URL, BODY) == (204, b"")
    assert bytes(uart.written) == http_writes(BODY, read=False)


def test_http_module_status_601_raises_and_terms():
    uart, m = modem(http_script(BODY, 601, b""))
    e = raises_kind("connect", m.http_post, URL, BODY)
    assert "601" in str(e)
    assert bytes(uart.written) == http_writes(BODY, read=False)
    assert uart.done()


def test_http_6xx_after_bearer_loss_is_an_event_too():
    for status in (603, 605):
        uart, m = modem(http_script(BODY, status, b"", action_extra=lines(b"+SAPBR 1: DEACT")))
        got = recorder(m)
        m.bearer_up = True
        assert str(status) in str(raises_kind("connect", m.http_post, URL, BODY))
        assert bytes(uart.written).endswith(b"AT+HTTPTERM\r")
        assert not m.bearer_up
        m.poll()
        assert got == [("event", "pdp_deact", "+SAPBR 1: DEACT")]


def test_http_error_on_para_still_terms():
    script = [(b"AT+HTTPINIT\r", OK), (HTTP_PARA[0], ERROR), (b"AT+HTTPTERM\r", OK)]
    uart, m = modem(script)
    raises(ATError, m.http_post, URL, BODY)
    assert bytes(uart.written) == b"AT+HTTPINIT\r" + HTTP_PARA[0] + b"AT+HTTPTERM\r"
    assert uart.done()


def test_http_init_left_open_is_termed_and_retried():
    script = [(b"AT+HTTPINIT\r", ERROR), (b"AT+HTTPTERM\r", OK)] + http_script(BODY, 200, b"x")
    uart, m = modem(script)
    assert m.http_post(URL, BODY) == (200, b"x")
    assert bytes(uart.written) == b"AT+HTTPINIT\rAT+HTTPTERM\r" + http_writes(BODY)


def test_http_action_without_space_and_short_read():
    n = b"5"
    script = [
        (b"AT+HTTPINIT\r", OK),
        (HTTP_PARA[0], OK),
        (HTTP_PARA[1], OK),
        (b"AT+HTTPDATA=3,20000\r", b"\r\nDOWNLOAD\r\n"),
        (b"a=1", OK),
        (b"AT+HTTPACTION=1\r", OK + lines(b"+HTTPACTION:1,200," + n)),
        (b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: 3\r\nabc" + OK),
        (b"AT+HTTPTERM\r", OK),
    ]
    uart, m = modem(script)
    e = raises_kind("connect", m.http_post, URL, b"a=1")
    assert "HTTP 200" in str(e) and "3 of 5" in str(e)
    assert bytes(uart.written).endswith(b"AT+HTTPREAD\rAT+HTTPTERM\r") and uart.done()


def test_http_content_type_quote_is_escaped():
    script = [
        (b"AT+HTTPINIT\r", OK),
        (HTTP_PARA[0], OK),
        (b'AT+HTTPPARA="USER_DEFINED","Content-Type: text/plain; charset=\\22utf-8\\22"\r', ERROR),
        (b"AT+HTTPTERM\r", OK),
    ]
    uart, m = modem(script)
    raises(ATError, m.http_post, URL, b"x", 'text/plain; charset="utf-8"')
    assert uart.done()


def test_http_bad_url_is_refused_before_writing():
    uart, m = modem([])
    assert "url" in str(raises(ValueError, m.http_post, 'https://x/"y', BODY))
    assert bytes(uart.written) == b""


# ---------------------------------------------------------------------------- MQTT connect
def connect_script(start=SSLSTART, clean_ka=b"1,300", connect_reply=None, connack_reply=None):
    return [
        (MCONFIG, OK),
        (start, connect_reply or [OK, 3, b"\r\nCONNECT OK\r\n"]),
        (b"AT+MCONNECT=" + clean_ka + b"\r", connack_reply or [OK, 2, b"\r\nCONNACK OK\r\n"]),
        (b"AT+MQTTMSGSET=0\r", OK),
    ]


def test_mqtt_connect_tls_exact_bytes_and_mconnect_at_once():
    uart, m = modem(connect_script())
    m.mqtt_connect(CID, USER, PASSWORD, HOST, 1883)
    assert m.mqtt_connected
    assert bytes(uart.written) == MCONFIG + SSLSTART + b"AT+MCONNECT=1,300\rAT+MQTTMSGSET=0\r"
    assert uart.done()
    # MCONNECT is the very next write after SSLMIPSTART, made once CONNECT OK was read
    i = write_index(uart, b"AT+MCONNECT=1,300\r")
    assert uart.writes[i - 1][1] == SSLSTART
    assert uart.writes[i][0] == len(OK) * 2 + len(b"\r\nCONNECT OK\r\n")


def test_mqtt_connect_tcp_keepalive_and_clean():
    uart, m = modem(connect_script(start=TCPSTART, clean_ka=b"0,120"))
    m.mqtt_connect(CID, USER, PASSWORD, HOST, 1883, tls=False, keepalive=120, clean=False)
    assert bytes(uart.written) == MCONFIG + TCPSTART + b"AT+MCONNECT=0,120\rAT+MQTTMSGSET=0\r"
    assert m.mqtt_connected


def test_mqtt_refused_is_credentials_refused_without_the_password():
    script = connect_script(connack_reply=[OK, 2, ERROR])[:3]
    uart, m = modem(script)
    e = raises_kind("refused", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
    assert "refused" in str(e)
    assert PASSWORD not in str(e) and PASSWORD not in repr(e)
    assert not m.mqtt_connected
    assert bytes(uart.written) == MCONFIG + SSLSTART + b"AT+MCONNECT=1,300\r"


def test_mqtt_mconfig_error_does_not_show_the_password():
    uart, m = modem([(MCONFIG, ERROR)])
    e = raises(ATError, m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
    assert PASSWORD not in str(e)


def test_mqtt_connect_fail_is_connect_error():
    reply = [OK, 3, lines(b"STATE: IP INITIAL", b"CONNECT FAIL")]
    uart, m = modem([(MCONFIG, OK), (SSLSTART, reply)])
    e = raises_kind("connect", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
    assert "CONNECT FAIL" in str(e) and "IP INITIAL" in str(e) and HOST in str(e)
    assert bytes(uart.written) == MCONFIG + SSLSTART  # no MCONNECT
    assert not m.mqtt_connected


def test_mqtt_start_error_offline_is_connect_error():
    script = [
        (MCONFIG, OK),
        (SSLSTART, b"\r\n+CME ERROR: 3\r\n"),
        (b"AT+MQTTSTATU\r", lines(b"+MQTTSTATU :0") + OK),
    ]
    uart, m = modem(script)
    raises_kind("connect", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
    assert bytes(uart.written) == MCONFIG + SSLSTART + b"AT+MQTTSTATU\r"


def test_mqtt_already_connect_goes_on_with_mconnect():
    uart, m = modem(connect_script(connect_reply=[OK, 1, b"\r\nALREADY CONNECT\r\n"]))
    m.mqtt_connect(CID, USER, PASSWORD, HOST, 1883)
    assert m.mqtt_connected
    assert bytes(uart.written) == MCONFIG + SSLSTART + b"AT+MCONNECT=1,300\rAT+MQTTMSGSET=0\r"


def test_mqtt_mconnect_767_is_never_adopted_as_our_session():
    # a session the module still holds (the board restarted, not the module) is somebody
    # else's identity: LinkDown, so the supervisor closes it and connects afresh
    for connect_reply in ([OK, b"\r\nALREADY CONNECT\r\n"], [OK, b"\r\nCONNECT OK\r\n"]):
        script = connect_script(connect_reply=connect_reply, connack_reply=b"\r\n+CME ERROR: 767\r\n")[:3]
        uart, m = modem(script)
        raises_kind("link", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
        assert not m.mqtt_connected and uart.done()
        assert bytes(uart.written) == MCONFIG + SSLSTART + b"AT+MCONNECT=1,300\r"  # no MQTTSTATU, no MQTTMSGSET


def test_mqtt_closed_in_the_same_read_as_connect_ok_is_link_down():
    script = connect_script(connect_reply=b"\r\nOK\r\n\r\nCONNECT OK\r\n\r\nCLOSED\r\n", connack_reply=b"\r\n+CME ERROR: 767\r\n")[:3]
    for chunk in (0, 1, 7):
        uart, m = modem(list(script))
        uart.chunk = chunk
        raises_kind("link", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
        assert not m.mqtt_connected


def test_mqtt_closed_while_waiting_for_connack_is_link_down():
    script = connect_script(connack_reply=[OK, 2, lines(b"CLOSED")])[:3]
    uart, m = modem(script)
    got = recorder(m)
    raises_kind("link", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
    assert not m.mqtt_connected
    assert got == []  # handlers run from poll(), never inside a command
    m.poll()
    assert got == [("event", "closed", "CLOSED")]


def test_mqtt_closed_right_after_connack_is_link_down():
    # the server drops the link as soon as the session is up (a second client with the same
    # id, a denied topic...): the driver must not report a connected session
    for connack, msgset in (
        ([OK, 2, lines(b"CONNACK OK", b"CLOSED")], OK),  # read before MQTTMSGSET is sent
        ([OK, 2, lines(b"CONNACK OK")], lines(b"CLOSED") + OK),  # while MQTTMSGSET runs
    ):
        script = connect_script(connack_reply=connack)
        script[3] = (b"AT+MQTTMSGSET=0\r", msgset)
        uart, m = modem(script)
        got = recorder(m)
        raises_kind("link", m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883)
        assert not m.mqtt_connected
        m.poll()
        assert got == [("event", "closed", "CLOSED")]


def test_mqtt_rdy_during_start_aborts():
    uart, m = modem([(MCONFIG, OK), (SSLSTART, [OK, 2, lines(b"RDY")])])
    got = recorder(m)
    assert raises(ATAbort, m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883).line == "RDY"
    assert not m.mqtt_connected and bytes(uart.written) == MCONFIG + SSLSTART
    m.poll()
    assert got == [("event", "reboot", "RDY")]


def test_mqtt_stale_closed_before_connect_ok_does_not_fail_the_new_session():
    # the CLOSED of the previous link, printed while the new one is being made
    uart, m = modem(connect_script(connect_reply=[OK, 1, lines(b"CLOSED"), 1, b"\r\nCONNECT OK\r\n"]))
    got = recorder(m)
    m.mqtt_connect(CID, USER, PASSWORD, HOST, 1883)
    assert m.mqtt_connected and uart.done()
    m.poll()
    assert got == [("event", "closed", "CLOSED")]


def test_mqtt_credentials_with_quote_cr_lf_are_refused_naming_the_field():
    good = [CID, USER, PASSWORD, HOST]
    names = ["client_id", "username", "password", "host"]
    for k in range(4):
        for bad in ('"', "\r", "\n"):
            args = list(good)
            args[k] = args[k][:5] + bad + args[k][5:]
            uart, m = modem([])
            e = raises(ValueError, m.mqtt_connect, args[0], args[1], args[2], args[3], 1883)
            assert names[k] in str(e), str(e)
            assert bytes(uart.written) == b""


def test_mqtt_keepalive_range():
    for ka in (0, 29, 1201, 3600):
        uart, m = modem([])
        e = raises(ValueError, m.mqtt_connect, CID, USER, PASSWORD, HOST, 1883, True, ka)
        assert "keepalive" in str(e)
        assert bytes(uart.written) == b""
    for ka in (30, 1200):
        uart, m = modem(connect_script(clean_ka=b"1," + str(ka).encode()))
        m.mqtt_connect(CID, USER, PASSWORD, HOST, 1883, keepalive=ka)
        assert m.mqtt_connected


# ---------------------------------------------------------------------------- subscribe
def test_subscribe_waits_for_suback():
    script = [(b'AT+MSUB="/pk/dn/user/get",1\r', [OK, 3, b"\r\nSUBACK\r\n"])]
    uart, m = modem(script, connected=True)
    m.mqtt_subscribe("/pk/dn/user/get", 1)
    assert bytes(uart.written) == b'AT+MSUB="/pk/dn/user/get",1\r'
    assert uart.done() and not uart.any()


def test_unsubscribe_waits_for_unsuback():
    script = [(b'AT+MUNSUB="/pk/dn/user/get"\r', [OK, 3, b"\r\nUNSUBACK\r\n"])]
    uart, m = modem(script, connected=True)
    m.mqtt_unsubscribe("/pk/dn/user/get")
    assert bytes(uart.written) == b'AT+MUNSUB="/pk/dn/user/get"\r'
    assert uart.done() and not uart.any()


def test_subscribe_refusals():
    uart, m = modem([], connected=False)
    raises_kind("link", m.mqtt_subscribe, "/pk/dn/user/get")
    uart, m = modem([], connected=True)
    raises(ValueError, m.mqtt_subscribe, "/pk/dn/user/get", 2)
    assert "topic" in str(raises(ValueError, m.mqtt_subscribe, '/pk/"x'))
    assert bytes(uart.written) == b""


def test_downlink_between_ok_and_suback_is_delivered_at_poll():
    script = [(b'AT+MSUB="/pk/dn/user/get",0\r', [OK, 1, msub(DN, TRICKY), 1, b"\r\nSUBACK\r\n"])]
    uart, m = modem(script, connected=True)
    got = recorder(m)
    m.mqtt_subscribe("/pk/dn/user/get")
    assert got == []
    m.poll()
    assert got == [("msg", "/pk/dn/user/get", TRICKY)]


# ---------------------------------------------------------------------------- publish
def mpub(topic, qos, msg):
    return b'AT+MPUB="' + topic.encode() + b'",' + str(qos).encode() + b',0,"' + msg + b'"\r'


def test_publish_qos0_returns_after_ok():
    cmd = mpub(UP, 0, b"HelloWorld")
    uart, m = modem([(cmd, OK)], connected=True)
    m.mqtt_publish(UP, "HelloWorld")
    assert bytes(uart.written) == cmd
    assert m.stats["published"] == 1


def test_publish_qos1_waits_for_puback_with_urc_and_downlink_between():
    cmd = mpub(UP, 1, b"{\\22t\\22:1}")
    reply = [OK, 2, lines(b"+CGEV: ME PDN ACT 1"), 1, msub(DN, TRICKY), 2, b"\r\nPUBACK\r\n"]
    uart, m = modem([(cmd, reply)], connected=True)
    got = recorder(m)
    m.mqtt_publish(UP, b'{"t":1}', 1)
    assert bytes(uart.written) == cmd
    assert uart.done() and not uart.any()  # PUBACK was consumed by the publish
    assert m.mqtt_connected and m.stats["acked"] == 1
    assert got == []
    m.poll()
    assert got == [("msg", "/pk/dn/user/get", TRICKY)]


def test_publish_escaping_rule_byte_exact():
    assert escape(b'a"b') == b"a\\22b"
    assert escape(b"a\rb\nc") == b"a\\0Db\\0Ac"
    assert escape(b"a\\b") == b"a\\5Cb"
    assert escape(b"\\22") == b"\\5C22"  # a literal \22 stays literal
    payload = b'{"s":"a\\b","n":"1\r\n2"}'
    want = mpub(UP, 0, b"{\\22s\\22:\\22a\\5Cb\\22,\\22n\\22:\\221\\0D\\0A2\\22}")
    uart, m = modem([(want, OK)], connected=True)
    m.mqtt_publish(UP, payload)
    assert bytes(uart.written) == want


def test_publish_cannot_inject_at_commands():
    payload = b'x"\r\nAT+MIPCLOSE\r\n'
    want = b'AT+MPUB="/pk/dn/user/update",0,0,"x\\22\\0D\\0AAT+MIPCLOSE\\0D\\0A"\r'
    uart, m = modem([(want, OK)], connected=True)
    m.mqtt_publish(UP, payload)
    w = bytes(uart.written)
    assert w == want
    assert len(uart.writes) == 1
    assert w.count(b"\r") == 1 and w.endswith(b"\r") and b"\n" not in w
    assert w.count(b'"') == 4  # the topic's two and the message's two
    inner = w[w.index(b',0,"') + 4 : -2]
    assert b'"' not in inner and b"\r" not in inner and b"\n" not in inner


def test_publish_utf8_text_goes_through_mpub():
    text = '{"温度":25}'
    want = mpub(UP, 0, escape(text.encode()))
    uart, m = modem([(want, OK)], connected=True)
    m.mqtt_publish(UP, text)
    assert bytes(uart.written) == want


def test_binary_payload_needs_mpubex_and_old_firmware_refuses_it():
    uart, m = modem([(b"AT+CGMR\r", lines(V409) + OK)], connected=True)
    m.check_version()
    for payload in (b"bin\x00ary", b"\xff\xfe invalid utf-8"):
        e = raises(ValueError, m.mqtt_publish, UP, payload)
        assert "AirM2M_Air724UG_V409_LTE_AT" in str(e) and "907" in str(e) and "MPUBEX" in str(e)
    assert bytes(uart.written) == b"AT+CGMR\r"


def test_binary_payload_through_mpubex_after_prompt():
    for payload in (b'bin\x00\r\n"OK"\r\n', b"\xff\xfe\xfd", b"ctrl\x1a\x1b"):
        cmd = b'AT+MPUBEX="' + UP.encode() + b'",1,0,' + str(len(payload)).encode() + b"\r"
        script = [
            (b"AT+CGMR\r", lines(b'+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"') + OK),
            (cmd, [1, b"\r\n> "]),
            (payload, [1, OK, 2, b"\r\nPUBACK\r\n"]),
        ]
        uart, m = modem(script, connected=True)
        m.check_version()
        m.mqtt_publish(UP, payload, 1)
        assert bytes(uart.written) == b"AT+CGMR\r" + cmd + payload
        i = write_index(uart, payload)
        assert uart.writes[i - 1][1] == cmd
        # the raw bytes went out only after the prompt had been read
        prior = len(lines(b'+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"') + OK) + len(b"\r\n> ")
        assert uart.writes[i][0] == prior
        assert uart.done() and not uart.any()


def test_mpubex_echoed_body_is_not_the_reply():
    payload = b"\x00\r\nOK\r\n"
    cmd = b'AT+MPUBEX="' + UP.encode() + b'",1,0,7\r'
    uart, m = modem([(cmd, b"\r\n> "), (payload, payload + OK + b"\r\nPUBACK\r\n")], connected=True, version=907)
    m.mqtt_publish(UP, payload, 1)
    assert uart.done() and not uart.any()


def test_mpub_max_boundary():
    payload = b"a" * MPUB_MAX
    want = mpub(UP, 0, payload)
    uart, m = modem([(want, OK)], connected=True, version=409)
    m.mqtt_publish(UP, payload)
    assert bytes(uart.written) == want


def test_long_escaped_payload_goes_through_mpubex():
    for payload in (b"a" * (MPUB_MAX + 1), b'"' * (MPUB_MAX // 3 + 1)):
        assert len(escape(payload)) > MPUB_MAX
        cmd = b'AT+MPUBEX="' + UP.encode() + b'",0,0,' + str(len(payload)).encode() + b"\r"
        uart, m = modem([(cmd, b"\r\n> "), (payload, OK)], connected=True, version=907)
        m.mqtt_publish(UP, payload)
        assert bytes(uart.written) == cmd + payload
        # the same payload on V409 is refused, naming the version
        uart, m = modem([], connected=True, version=409)
        e = raises(ValueError, m.mqtt_publish, UP, payload)
        assert "V409" in str(e) and "907" in str(e)
        assert bytes(uart.written) == b""


def test_payload_limits_and_qos():
    uart, m = modem([], connected=True, version=907)
    e = raises(ValueError, m.mqtt_publish, UP, b"a" * (PAYLOAD_MAX + 1))
    assert str(PAYLOAD_MAX) in str(e)
    raises(ValueError, m.mqtt_publish, UP, b"x", 2)
    raises(ValueError, m.mqtt_publish, '/pk/"', b"x")
    assert bytes(uart.written) == b""
    payload = (bytes(range(256)) * (PAYLOAD_MAX // 256 + 1))[:PAYLOAD_MAX]
    cmd = b'AT+MPUBEX="' + UP.encode() + b'",0,0,' + str(PAYLOAD_MAX).encode() + b"\r"
    uart, m = modem([(cmd, b"\r\n> "), (payload, OK)], connected=True, version=907)
    m.mqtt_publish(UP, payload)
    assert bytes(uart.written) == cmd + payload


def test_publish_while_not_connected_is_link_down():
    uart, m = modem([], connected=False)
    raises_kind("link", m.mqtt_publish, UP, b"x")
    raises_kind("link", m.mqtt_publish, UP, b"x", 1)
    assert bytes(uart.written) == b""


def test_closed_while_waiting_for_puback_is_link_down():
    cmd = mpub(UP, 1, b"x")
    uart, m = modem([(cmd, [OK, 3, lines(b"CLOSED")])], connected=True)
    got = recorder(m)
    e = raises_kind("link", m.mqtt_publish, UP, b"x", 1)
    assert "CLOSED" in str(e)
    assert not m.mqtt_connected
    assert m.stats["acked"] == 0
    m.poll()
    assert got == [("event", "closed", "CLOSED")]
    raises_kind("link", m.mqtt_publish, UP, b"y", 1)  # nothing more is sent
    assert bytes(uart.written) == cmd


def test_pdp_loss_and_rdy_while_publishing_are_link_down():
    for urc in (b"+PDP: DEACT", b"+CGEV: NW PDN DEACT 1", b"+SAPBR 1: DEACT", b"RDY"):
        cmd = mpub(UP, 1, b"x")
        uart, m = modem([(cmd, [OK, 1, lines(urc)])], connected=True)
        m.bearer_up = True
        raises_kind("link", m.mqtt_publish, UP, b"x", 1)
        assert not m.mqtt_connected and not m.bearer_up


def test_publish_bytearray_payload():
    want = mpub(UP, 0, b"a\\22b")
    uart, m = modem([(want, OK)], connected=True)
    m.mqtt_publish(UP, bytearray(b'a"b'))
    assert bytes(uart.written) == want


def test_publish_from_on_message():
    cmd = mpub(UP, 0, b"echo:hi")
    uart, m = modem([(cmd, OK)], connected=True)
    m.on_message = lambda topic, payload: m.mqtt_publish(UP, b"echo:" + payload)
    uart.feed(msub(DN, b"hi"))
    m.poll()
    assert bytes(uart.written) == cmd


# ---------------------------------------------------------------------------- downlinks
def test_downlink_reaches_on_message_exactly_at_poll():
    uart, m = modem([])
    got = recorder(m)
    uart.feed(msub(DN, TRICKY))
    m.poll()
    assert got == [("msg", "/pk/dn/user/get", TRICKY)]
    assert isinstance(got[0][1], str) and isinstance(got[0][2], bytes)
    assert m.stats["downlinks"] == 1


def test_downlink_example_from_the_manual():
    uart, m = modem([])
    got = recorder(m)
    uart.feed(b'\r\n+MSUB: "/a1mxL3s6Z7m/866714043075174/user/get",11 byte,Hello World\r\n')
    m.poll()
    assert got == [("msg", "/a1mxL3s6Z7m/866714043075174/user/get", b"Hello World")]


def test_downlink_in_the_middle_of_a_command_reply():
    reply = b"\r\n+CSQ: 20,99\r\n" + msub(DN, TRICKY) + OK
    uart, m = modem([(b"AT+CSQ\r", reply)])
    got = recorder(m)
    assert m.signal() == (20, 99)
    assert got == []
    m.poll()
    assert got == [("msg", "/pk/dn/user/get", TRICKY)]


def test_several_downlinks_in_a_row_and_empty_payload():
    payloads = [b"one", TRICKY, b"", b"a,b,c", b"\x00\xff binary"]
    uart, m = modem([])
    got = recorder(m)
    uart.feed(b"".join(msub(DN, p) for p in payloads))
    drain(uart, m)
    assert got == [("msg", "/pk/dn/user/get", p) for p in payloads]


def test_downlink_unquoted_topic():
    uart, m = modem([])
    got = recorder(m)
    uart.feed(b"\r\n+MSUB: /pk/dn/user/get,5 byte,hello\r\n")
    m.poll()
    assert got == [("msg", "/pk/dn/user/get", b"hello")]


def test_downlinks_split_at_every_byte_boundary():
    stream = msub(DN, TRICKY) + lines(b"+PDP: DEACT") + msub(b"/pk/dn/user/other", b'"x",\r\n') + lines(b"CLOSED")
    for chunk in range(1, len(stream) + 1):
        uart, m = modem([], chunk=chunk)
        got = recorder(m)
        uart.feed(stream)
        drain(uart, m)
        msgs = [g for g in got if g[0] == "msg"]
        events = [g for g in got if g[0] == "event"]
        assert msgs == [("msg", "/pk/dn/user/get", TRICKY), ("msg", "/pk/dn/user/other", b'"x",\r\n')], (chunk, got)
        assert events == [("event", "pdp_deact", "+PDP: DEACT"), ("event", "closed", "CLOSED")], (chunk, got)


def test_downlinks_split_inside_a_publish():
    cmd = mpub(UP, 1, b"hi")
    stream = OK + msub(DN, TRICKY) + msub(DN, b"\r\nPUBACK\r\n") + b"\r\nPUBACK\r\n"
    for chunk in range(1, len(stream) + 1):
        uart, m = modem([(cmd, stream)], chunk=chunk, connected=True)
        got = recorder(m)
        m.mqtt_publish(UP, b"hi", 1)
        assert not uart.any(), chunk  # the real PUBACK was the last thing read
        m.poll()
        assert got == [("msg", "/pk/dn/user/get", TRICKY), ("msg", "/pk/dn/user/get", b"\r\nPUBACK\r\n")], (chunk, got)


def test_cached_mode_notice_is_logged_and_pushed_downlinks_still_work():
    cap = capture_log()
    try:
        uart, m = modem([])
        got = recorder(m)
        uart.feed(lines(b"+MSUB: 1") + msub(DN, b"pushed"))
        drain(uart, m)
        assert got == [("msg", "/pk/dn/user/get", b"pushed")]
        assert "cached" in cap.text()
    finally:
        release_log()


def test_on_message_raising_does_not_escape_poll():
    cap = capture_log()
    try:
        uart, m = modem([])
        seen = []

        def bad(topic, payload):
            seen.append(payload)
            if payload == b"boom":
                raise ValueError("handler bug")

        m.on_message = bad
        uart.feed(msub(DN, b"boom") + msub(DN, b"after"))
        m.poll()
        assert seen == [b"boom", b"after"]
        assert "handler bug" in cap.text() and "on_message" in cap.text()
    finally:
        release_log()


def test_downlink_without_handler_is_logged():
    cap = capture_log()
    try:
        uart, m = modem([])
        uart.feed(msub(DN, b"lost"))
        m.poll()
        assert "/pk/dn/user/get" in cap.text()
    finally:
        release_log()


def test_one_wait_over_the_byte_budget_hands_the_oldest_over_early_and_loses_none():
    n = 40
    body = b"x" * 500  # 40 x 500 B: more than the 16 KB one wait may hold
    uart, m = modem([(b"AT+CSQ\r", [b"".join(msub(DN, b"m%02d" % i + body) for i in range(n)), lines(b"+CSQ: 9,9") + OK])])
    got = recorder(m)
    assert m.signal() == (9, 9)  # the whole burst came inside this one command's wait
    early = m.stats["early"]
    assert 0 < early < n and len(got) == early  # handed over inside the wait, in order
    m.poll()
    assert m.stats["downlinks"] == n and m.stats["downlinks_dropped"] == 0
    assert got == [("msg", "/pk/dn/user/get", b"m%02d" % i + body) for i in range(n)]


def test_a_handler_inside_the_receive_path_cannot_send_a_command():
    uart, m = modem([])
    seen = []

    def handler(topic, payload):
        try:
            m.signal()
        except ModemError as e:
            seen.append(str(e))

    m.on_message = handler
    m._on_msub(b'+MSUB: "/t",1', b"x")  # as the receive path calls it, mid-parse
    m.at._parsing = True
    m._hand("/t", b"x")
    m.at._parsing = False
    assert seen and "receive path" in seen[0] and bytes(uart.written) == b""


def test_a_burst_read_by_poll_loses_nothing():
    # 401 downlinks (171 KB) arriving in 256-byte reads while the app calls poll(): all delivered
    n = 401
    frames = [msub(DN, (b"%03d:" % i) + b"p" * (i * 7 % 800)) for i in range(n)]
    uart, m = modem([])
    uart.chunk = 256
    got = recorder(m)
    uart.feed(b"".join(frames))
    for _ in range(5000):
        m.poll()
        if not uart.any():
            break
    m.poll()
    assert m.stats["downlinks_dropped"] == 0
    assert [p for _, _, p in got] == [(b"%03d:" % i) + b"p" * (i * 7 % 800) for i in range(n)]


# ---------------------------------------------------------------------------- link events
def test_link_events_update_state_and_reach_on_event_at_poll():
    cases = [
        (b"CLOSED", "closed", False, True),
        (b"+PDP: DEACT", "pdp_deact", False, False),
        (b"+PDP DEACT", "pdp_deact", False, False),
        (b"+CGEV: NW PDN DEACT 1", "pdp_deact", False, False),
        (b"+SAPBR 1: DEACT", "pdp_deact", False, False),
        (b"RDY", "reboot", False, False),
        (b"+CPIN: SIM REMOVED", "sim_removed", False, True),
        (b"+CPIN: NOT INSERTED", "sim_removed", False, True),
    ]
    for urc, name, connected, bearer in cases:
        uart, m = modem([], connected=True)
        m.bearer_up = True
        got = recorder(m)
        uart.feed(lines(urc))
        m.poll()
        assert got == [("event", name, urc.decode())], (urc, got)
        assert m.mqtt_connected == connected and m.bearer_up == bearer, urc
        m.poll()
        assert len(got) == 1


def test_event_inside_a_command_is_delivered_at_the_next_poll():
    reply = lines(b"+PDP: DEACT", b"+CSQ: 20,99") + OK
    uart, m = modem([(b"AT+CSQ\r", reply)], connected=True)
    m.bearer_up = True
    got = recorder(m)
    assert m.signal() == (20, 99)
    assert got == [] and not m.mqtt_connected and not m.bearer_up
    m.poll()
    assert got == [("event", "pdp_deact", "+PDP: DEACT")]


def test_rdy_then_cpin_ready():
    uart, m = modem([], connected=True)
    m.bearer_up = True
    got = recorder(m)
    uart.feed(lines(b"RDY", b"+CPIN: READY"))
    m.poll()
    assert got == [("event", "reboot", "RDY")]
    assert not m.mqtt_connected and not m.bearer_up


def test_rdy_in_the_middle_of_a_command_aborts_it():
    uart, m = modem([(b"AT+CSQ\r", lines(b"RDY") + lines(b"+CPIN: READY"))])
    got = recorder(m)
    e = raises(ATAbort, m.signal)
    assert e.line == "RDY"
    m.poll()
    assert got == [("event", "reboot", "RDY")]
    uart2, m2 = modem([(b"AT+CPIN?\r", lines(b"+CPIN: SIM REMOVED") + OK)])
    raises_kind("sim", m2.check_sim)  # an answer to CPIN?, not an abort


def test_sim_removed_aborts_a_command():
    uart, m = modem([(b"AT+CGATT?\r", lines(b"+CPIN: SIM REMOVED"))], connected=True)
    got = recorder(m)
    raises(ATAbort, m.attached)
    m.poll()
    assert got == [("event", "sim_removed", "+CPIN: SIM REMOVED")]


def test_sim_put_back_is_a_sim_ready_event_once():
    uart, m = modem([], connected=True)
    got = recorder(m)
    uart.feed(lines(b"+CPIN: READY"))  # at boot: not an event
    m.poll()
    assert got == []
    uart.feed(lines(b"+CPIN: SIM REMOVED", b"+CPIN: READY", b"+CPIN: READY"))
    m.poll()
    assert got == [("event", "sim_removed", "+CPIN: SIM REMOVED"), ("event", "sim_ready", "+CPIN: READY")]


def test_a_pdp_line_that_is_not_a_deact_does_not_abort_a_publish():
    reply = OK + lines(b"+PDP: ACT 1") + lines(b"PUBACK")
    uart, m = modem([(b'AT+MPUB="/pk/dn/user/update",1,0,"x"\r', reply)], connected=True)
    m.mqtt_publish("/pk/dn/user/update", b"x", 1)
    assert m.mqtt_connected and m.at.final == b"PUBACK"


def test_on_event_raising_is_logged_and_messages_still_delivered():
    cap = capture_log()
    try:
        uart, m = modem([])
        seen = []

        def bad(name, detail):
            raise RuntimeError("event bug")

        m.on_event = bad
        m.on_message = lambda topic, payload: seen.append(payload)
        uart.feed(lines(b"CLOSED") + msub(DN, b"x"))
        m.poll()
        assert seen == [b"x"]
        assert "event bug" in cap.text()
    finally:
        release_log()


def test_late_replies_are_harmless():
    uart, m = modem([(b"AT+CSQ\r", lines(b"+CSQ: 20,99") + OK)], connected=True)
    got = recorder(m)
    uart.feed(lines(b"PUBACK", b"SUBACK", b"CONNACK OK", b"OK"))
    m.poll()
    assert got == [] and m.at.stats["unknown"] == 0
    assert m.signal() == (20, 99)


# ---------------------------------------------------------------------------- status
def test_mqtt_status_space_before_colon():
    for line, want in ((b"+MQTTSTATU :1", 1), (b"+MQTTSTATU :0", 0), (b"+MQTTSTATU :2", 2), (b"+MQTTSTATU: 1", 1)):
        uart, m = modem([(b"AT+MQTTSTATU\r", lines(line) + OK)])
        assert m.mqtt_status() == want
        assert bytes(uart.written) == b"AT+MQTTSTATU\r"


def test_mqtt_disconnect_ignores_767():
    script = [(b"AT+MDISCONNECT\r", b"\r\n+CME ERROR: 767\r\n"), (b"AT+MIPCLOSE\r", b"\r\n+CME ERROR: 767\r\n")]
    uart, m = modem(script, connected=True)
    m.mqtt_disconnect()
    assert not m.mqtt_connected
    assert bytes(uart.written) == b"AT+MDISCONNECT\rAT+MIPCLOSE\r"
    uart, m = modem([(b"AT+MDISCONNECT\r", OK), (b"AT+MIPCLOSE\r", OK)], connected=True)
    m.mqtt_disconnect()
    assert not m.mqtt_connected and uart.done()
