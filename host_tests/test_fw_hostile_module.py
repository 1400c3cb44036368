# What a module (or a noisy line) can send that must neither wedge, fool nor drop: one test
# per way it went wrong before (the engine and the driver over the stub UART, on a virtual
# clock that starts just before the ticks wrap). Runs under CPython and MicroPython.
from fwtest import StubUART, VirtualClock, msub, raises, raises_kind

from firmware.air72x import MSUB_MAX, Air72x
from firmware.at import AT
from firmware.errors import ATAbort, ATError, ATTimeout, ModemError

OK = b"\r\nOK\r\n"
DN = b"/pk/dn/user/get"
UP = "/pk/dn/user/update"


def lines(*items):
    return b"".join(b"\r\n" + i + b"\r\n" for i in items)


def driver(script=(), rxbuf=None, connected=False, version=None):
    uart = StubUART(script)
    m = Air72x(uart, rxbuf) if rxbuf else Air72x(uart)
    clock = VirtualClock()
    m.at.ticks, m.at.sleep = clock.ticks, clock.sleep
    m.mqtt_connected = connected
    if version:
        m.version = "AirM2M_Air724UG_V%d_LTE_AT" % version
        m.version_number = version
    got = []
    m.on_message = lambda topic, payload: got.append((topic, payload))
    return uart, m, clock, got


def drain(uart, m):
    for _ in range(10000):
        m.poll()
        if not uart.any():
            break
    m.poll()


# 1 -------------------------------------------------------------------------------------
def test_a_stalled_counted_item_is_given_up_and_the_next_reply_is_not_lost():
    uart, m, clock, got = driver([(b"AT+CSQ\r", lines(b"+CSQ: 20,99") + OK)])
    uart.feed(b'\r\n+MSUB: "/t",20 byte,abc')
    m.poll()
    clock.advance(10000)  # 10 s of silence
    assert m.signal() == (20, 99)
    m.poll()
    assert got == []  # no phantom downlink made of the reply
    assert m.at.stats["truncated"] == 1


def test_a_payload_that_keeps_coming_slowly_is_not_given_up():
    uart, m, clock, got = driver()
    body = b"0123456789" * 30
    frame = msub(DN, body)
    for i in range(0, len(frame), 7):
        uart.feed(frame[i : i + 7])
        m.poll()
        clock.advance(m.at.payload_ms - 1)  # never silent for a whole payload_ms
    drain(uart, m)
    assert got == [(DN.decode(), body)] and m.at.stats["truncated"] == 0


# 2 -------------------------------------------------------------------------------------
def test_a_count_above_what_the_module_can_send_is_refused_at_once():
    for count in (b"%d" % (MSUB_MAX + 1), b"99999", b"123456789", b"1234567890123"):
        uart, m, clock, got = driver([(b"AT\r", OK)])
        uart.feed(b'\r\n+MSUB: "/t",' + count + b" byte,x\r\n" + msub(DN, b"after"))
        m.poll()
        assert clock.slept == 0  # poll() did not wait for the announced bytes
        assert got == [(DN.decode(), b"after")]
        assert m.at.stats["discarded"] == 1
        m.at.cmd("AT")  # and the engine still works
        assert m.at.final == b"OK"


# 3 -------------------------------------------------------------------------------------
def test_finals_and_aborts_that_are_not_utf8_are_modem_errors():
    uart, m, clock, got = driver([(b"AT+CPIN?\r", b"\r\n+CME ERROR: \xb3\r\n"), (b"AT+X\r", b"\r\nRDY\xff\r\n"), (b"AT\r", OK)])
    e = raises(ATError, m.at.cmd, "AT+CPIN?", info=b"+CPIN")
    assert e.code is None and "?" in str(e)
    e = raises(ATAbort, m.at.cmd, "AT+X")
    assert e.line == "RDY?"
    m.at.cmd("AT")


def test_line_noise_in_a_then_final_is_a_modem_error():
    uart, m, clock, got = driver([(b'AT+MIPSTART="h",1\r', OK + b"\r\nCONNECT FAIL\xfe\xff\r\n"), (b"AT\r", OK)])
    m.at.cmd('AT+MIPSTART="h",1', then=(b"CONNECT OK", b"CONNECT FAIL"))
    assert m.at.final == b"CONNECT FAIL\xfe\xff"
    m.at.cmd("AT")


# 4 -------------------------------------------------------------------------------------
class FloodUART:
    """Answers every read with more of the same URC, for ever; a read takes 1 ms."""

    def __init__(self, clock, line=b"\r\n+CREG: 1\r\n"):
        self.clock = clock
        self.line = line
        self.written = b""

    def write(self, b):
        self.written += bytes(b)
        return len(b)

    def readinto(self, buf, n=None):
        self.clock.advance(1)
        k = min(len(buf), len(self.line))
        buf[:k] = self.line[:k]
        return k

    def any(self):
        return len(self.line)


def test_a_flood_of_bytes_cannot_keep_a_command_alive():
    clock = VirtualClock()
    for line in (b"\r\n+CREG: 1\r\n", b"\r\ngarbage that is no answer\r\n", b"\r\n+CSQ: 1,1\r\n"):
        uart = FloodUART(clock, line)
        at = AT(uart)
        at.ticks, at.sleep = clock.ticks, clock.sleep
        feeds = []
        at.idle = lambda: feeds.append(1)
        start = clock.now
        raises(ATTimeout, at.cmd, "AT+CGATT?", timeout=300, info=b"+CGATT")
        assert 300 <= clock.since(start) <= 300 + 8 + 2  # poll()'s reads of what came before, then the deadline
        assert len(at.lines) <= 16
        assert len(feeds) >= 290  # the watchdog was fed all along


# 5 -------------------------------------------------------------------------------------
def test_a_malformed_counted_header_loses_only_its_own_line():
    uart, m, clock, got = driver()
    uart.feed(msub(DN, b"one") + b'\r\n+MSUB: "/t",x byte,\r\n' + b"\r\n+HTTPREAD: ERROR\r\n" + msub(DN, b"two"))
    drain(uart, m)
    assert got == [(DN.decode(), b"one"), (DN.decode(), b"two")]


# 6 -------------------------------------------------------------------------------------
def test_a_topic_that_contains_byte_comma_is_delivered():
    uart, m, clock, got = driver()
    for topic in (b"/pk/dn/user/byte,x", b"/pk/dn/user/3 byte,x", b"/pk/dn/user/,9 byte,"):
        uart.feed(msub(topic, b"abc"))
    drain(uart, m)
    assert got == [("/pk/dn/user/byte,x", b"abc"), ("/pk/dn/user/3 byte,x", b"abc"), ("/pk/dn/user/,9 byte,", b"abc")]


# 7 -------------------------------------------------------------------------------------
def test_payload_bytes_never_become_a_line_whatever_the_sizes():
    inner = b'\r\n+MSUB: "/FAKE/inner",4 byte,evil\r\n\r\nOK\r\n\r\nCLOSED\r\n'
    for rxbuf in (96, 256, 1536):
        for topic_len in (10, 90, 300, 2000):
            uart, m, clock, got = driver(rxbuf=rxbuf)
            events = []
            m.on_event = lambda name, detail: events.append(name)
            topic = b"/pk/dn/" + b"t" * topic_len
            uart.chunk = 64
            uart.feed(msub(topic, b"x" * 50 + inner + b"y" * 50) + msub(DN, b"real"))
            drain(uart, m)
            assert (DN.decode(), b"real") in got, (rxbuf, topic_len)
            assert not [t for t, _ in got if "FAKE" in t] and events == [], (rxbuf, topic_len, got)


# 8 -------------------------------------------------------------------------------------
def mpubex(qos, body):
    return b'AT+MPUBEX="' + UP.encode() + b'",%d,0,%d\r' % (qos, len(body))


def test_a_body_that_starts_like_the_reply_does_not_eat_the_reply():
    body = b"\r\nOK\r\n\x00binary"
    for qos, reply in ((0, [OK]), (1, [OK, 3, b"\r\nPUBACK\r\n"])):
        uart, m, clock, got = driver([(mpubex(qos, body), b"\r\n>"), (body, reply)], connected=True, version=907)
        m.mqtt_publish(UP, body, qos)
        assert uart.done() and m.stats["published"] == 1
        assert clock.slept < 100  # answered at once, no 15 s wait


def test_an_echoed_body_never_completes_the_publish():
    # the module echoes what the board wrote (some firmware even after ATE0); a PUBACK inside
    # the body, longer than the receive buffer, must not stand in for the real one
    body = b"\x00" + b"z" * 1000 + b"\r\nPUBACK\r\n" + b"\r\nOK\r\n" + b"w" * 1000
    for echo_on in (False, True):
        echo = mpubex(1, body)[:-1] + b"\r\r\n" if echo_on else b""
        reply = [body, b"\r\nOK\r\n", 50, b"\r\nPUBACK\r\n"]
        uart, m, clock, got = driver([(mpubex(1, body), echo + b"\r\n>"), (body, reply)], rxbuf=256, connected=True, version=907)
        uart.chunk = 100
        m.mqtt_publish(UP, body, 1)
        assert uart.done(), echo_on  # returned only after the real, delayed PUBACK
        assert m.at.stats["unknown"] == 0 and m.at.stats["discarded"] == 0


def test_a_body_starting_with_crlf_is_taken_as_echo_only_when_the_module_echoes():
    body = b"\r\nPUBACK\r\n\x1b"
    for learned in (None, True):
        if learned:  # the module showed it echoes prompt data (an unambiguous body before)
            reply = [body, OK, 5, b"\r\nPUBACK\r\n"]
        else:
            reply = [OK, 5, b"\r\nPUBACK\r\n"]
        uart, m, clock, got = driver([(mpubex(1, body), b"\r\n>"), (body, reply)], connected=True, version=907)
        m.at.data_echo = learned
        m.mqtt_publish(UP, body, 1)
        assert uart.done(), learned


# 9 -------------------------------------------------------------------------------------
def test_information_is_the_line_that_belongs_to_the_command():
    script = [
        (b"AT+CSQ\r", lines(b"+CSQ: 20,99", b"+CREG: 1", b"+CEREG: 1") + OK),
        (b"AT+CGATT?\r", lines(b"+CGEV: ME PDN ACT 1", b"+CGATT: 1", b"+CGREG: 0") + OK),
        (b"AT+MQTTSTATU\r", lines(b"+MQTTSTATU :1", b"+E_UTRAN Service", b"^MODE: 17,17") + OK),
        (b"AT+SAPBR=2,1\r", lines(b"+SAPBR 1: DEACT", b'+SAPBR: 1,1,"10.1.2.3"', b"+NITZ: 26/12/01,10:00:00+32,0") + OK),
    ]
    uart, m, clock, got = driver(script)
    assert m.signal() == (20, 99)
    assert m.attached() is True
    assert m.mqtt_status() == 1
    assert m.bearer_ip() == "10.1.2.3"
    assert m.at.stats["unknown"] == 0


# 10 ------------------------------------------------------------------------------------
def test_downlinks_that_arrive_while_a_command_waits_are_all_delivered_after_it():
    frames = b"".join(msub(DN, b"m%02d" % i) for i in range(60))
    uart, m, clock, got = driver([(b"AT+CSQ\r", [frames, lines(b"+CSQ: 9,9") + OK])])
    assert m.signal() == (9, 9)
    assert got == []  # never from inside a command
    m.poll()
    assert got == [(DN.decode(), b"m%02d" % i) for i in range(60)]
    assert m.stats["downlinks_dropped"] == 0


# 12 ------------------------------------------------------------------------------------
def test_closed_right_after_connect_ok_is_link_down_at_every_split():
    frames = OK + b"\r\nCONNECT OK\r\n\r\nCLOSED\r\n"
    for chunk in (0, 1, 2, 5, 13):
        script = [
            (b'AT+MCONFIG="c","u","p"\r', OK),
            (b'AT+MIPSTART="h",1883\r', frames),
            (b"AT+MCONNECT=1,300\r", b"\r\n+CME ERROR: 767\r\n"),
        ]
        uart, m, clock, got = driver(script)
        uart.chunk = chunk
        raises_kind("link", m.mqtt_connect, "c", "u", "p", "h", 1883, tls=False)


# 13 ------------------------------------------------------------------------------------
def test_sim_busy_after_boot_is_waited_out():
    busy = b"\r\n+CME ERROR: 14\r\n"
    uart, m, clock, got = driver([(b"AT+CPIN?\r", busy), (b"AT+CPIN?\r", busy), (b"AT+CPIN?\r", lines(b"+CPIN: READY") + OK)])
    m.check_sim()
    assert uart.done() and 2000 <= clock.slept < 3000


def test_a_sim_that_stays_busy_is_a_sim_error_that_says_so():
    busy = b"\r\n+CME ERROR: 14\r\n"
    uart, m, clock, got = driver([(b"AT+CPIN?\r", busy)] * 12)
    uart.strict = False
    e = raises_kind("sim", m.check_sim)
    assert "busy" in str(e)
    asked = uart.written.count(b"AT+CPIN?\r")
    assert 10 <= asked <= 12 and 10000 <= clock.slept <= 11100


# 14 ------------------------------------------------------------------------------------
CHATTER = [
    b"^boot.rom'v'!",
    b"RDY",
    b"RDY",
    b"+E_UTRAN Service",
    b"+NITZ: 26/12/01,08:00:00+32,0",
    b"^MODE: 17,17",
    b"+CGEV: ME PDN ACT 1",
    b"SMS Ready",
    b"Call Ready",
    b"+CTZV: 26/12/01,08:00:00,+32",
    b"+CREG: 1",
    b"+CPIN: READY",
]


def test_boot_and_network_chatter_is_known_and_never_an_answer():
    chatter = b"".join(b"\r\n" + c + b"\r\n" for c in CHATTER)
    network = b"".join(b"\r\n" + c + b"\r\n" for c in CHATTER if c != b"RDY")  # RDY ends a command
    uart, m, clock, got = driver([(b"ATI\r", [network, lines(b"AirM2M_780E_V1161_LTE_AT") + OK]), (b"AT\r", [network, OK])])
    events = []
    m.on_event = lambda name, detail: events.append(name)
    uart.feed(chatter)
    m.poll()
    assert m.at.cmd("ATI") == [b"AirM2M_780E_V1161_LTE_AT"]
    assert m.at.cmd("AT") == []
    m.poll()
    assert m.at.stats["unknown"] == 0
    assert events == ["reboot", "reboot"]


def test_the_boot_banner_without_a_line_end_before_rdy():
    uart, m, clock, got = driver()
    events = []
    m.on_event = lambda name, detail: events.append(name)
    uart.feed(b"^boot.rom'v'!\r\n\r\nRDY\r\n")
    m.poll()
    uart.feed(b"^boot.rom'v'!RDY\r\n")
    m.poll()
    assert events == ["reboot", "reboot"] and m.at.stats["unknown"] == 0


# 15 ------------------------------------------------------------------------------------
def test_flow_control_is_turned_on_in_the_module_right_after_echo_off():
    script = [
        (b"AT\r", OK),
        (b"ATE0\r", OK),
        (b"AT+IFC=2,2\r", OK),
        (b"AT+CGMR\r", lines(b'+CGMR: "AirM2M_Air724UG_V409_LTE_AT"') + OK),
        (b"AT+CPIN?\r", lines(b"+CPIN: READY") + OK),
        (b"AT+CSQ\r", lines(b"+CSQ: 20,99") + OK),
    ]
    uart, m, clock, got = driver(script)
    m.ready(flow=True)
    assert uart.done()


# the app's side of the same door: what publish() is handed -----------------------------
def test_topics_the_module_or_the_platform_cannot_take_are_refused_naming_the_topic():
    uart, m, clock, got = driver(connected=True, version=907)
    for topic in ("/pk/dn/user/a\x00b", "/pk/dn/user/a\tb", "/pk/dn/+/x", "/pk/dn/#", "/" + "t" * 128, b"/pk/\xff"):
        e = raises(ValueError, m.mqtt_publish, topic, b"x")
        assert "topic" in str(e)
    for topic in (None, 5, ["/t"]):
        raises(TypeError, m.mqtt_publish, topic, b"x")
    assert bytes(uart.written) == b""


def test_payloads_of_the_wrong_type_are_a_type_error():
    uart, m, clock, got = driver(connected=True, version=907)
    for payload in (5, {"a": 1}, None, 1.5, ["x"]):
        raises(TypeError, m.mqtt_publish, UP, payload)
    assert bytes(uart.written) == b""


def test_every_control_byte_goes_through_mpubex_never_the_quoted_form():
    for c in list(range(0, 32)) + [127]:
        body = b"a" + bytes([c]) + b"b"
        if c in (10, 13):  # CR and LF are escaped in the quoted form: \0D \0A
            cmd = b'AT+MPUB="' + UP.encode() + b'",0,0,"a\\' + (b"0A" if c == 10 else b"0D") + b'b"\r'
            uart, m, clock, got = driver([(cmd, OK)], connected=True, version=907)
        else:
            uart, m, clock, got = driver([(mpubex(0, body), b"\r\n>"), (body, OK)], connected=True, version=907)
        m.mqtt_publish(UP, body, 0)
        assert uart.done(), c


def test_control_bytes_on_a_module_without_mpubex_are_refused_clearly():
    uart, m, clock, got = driver(connected=True, version=409)
    e = raises(ValueError, m.mqtt_publish, UP, b"a\x08b")
    assert "MPUBEX" in str(e)
    assert bytes(uart.written) == b""


def test_only_modem_errors_leave_the_engine_after_anything():
    uart, m, clock, got = driver([(b"AT\r", OK), (b"AT+Y\r", b"")])
    m.at.on(b"+BOOM", lambda line, p: 1 / 0)  # a handler's bug is contained
    uart.feed(b"\r\n+BOOM\r\n\x00\xff\xfe\r\n")
    m.poll()
    m.at.cmd("AT")
    e = raises(ModemError, m.at.cmd, "AT+Y", timeout=5)
    assert isinstance(e, ATTimeout)
