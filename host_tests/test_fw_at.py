# The AT engine against the stub UART, under CPython and MicroPython alike.
# Replies follow the forms of docs/at-dialect.md (the vendor manual's and published logs' bytes).
from fwtest import StubUART, VirtualClock, capture_log, msub, raises, release_log

from firmware.at import AT
from firmware.errors import ATAbort, ATError, ATTimeout, ModemError

CGMR = b'+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"'
MSUB_PAYLOAD = b'{"cmd":"a,b",\r\n"q":"\\"x\\""}\r\nOK\r\n'


def engine(script, chunk=0, rxbuf=1536):
    uart = StubUART(script, chunk=chunk)
    at = AT(uart, rxbuf=rxbuf)
    return uart, at


def test_ok_and_exact_write():
    uart, at = engine([(b"AT\r", b"\r\nOK\r\n")])
    assert at.cmd("AT") == []
    assert at.final == b"OK"
    assert bytes(uart.written) == b"AT\r"


def test_echo_on_info_line_and_double_cr():
    reply = b"AT+CGMR\r\r\n\r\n" + CGMR + b"\r\n\r\nOK\r\n"
    uart, at = engine([(b"AT+CGMR\r", reply)])
    assert at.cmd("AT+CGMR", info=b"+CGMR") == [CGMR]


def test_bare_information_line():
    uart, at = engine([(b"ATI\r", b"\r\nAirM2M_Air724UG_V409_LTE_AT\r\n\r\nOK\r\n")])
    assert at.cmd("ATI") == [b"AirM2M_Air724UG_V409_LTE_AT"]


def test_space_before_colon_is_information():
    uart, at = engine([(b"AT+MQTTSTATU\r", b"\r\n+MQTTSTATU :1\r\n\r\nOK\r\n")])
    assert at.cmd("AT+MQTTSTATU", info=b"+MQTTSTATU") == [b"+MQTTSTATU :1"]


def test_error_and_cme_codes():
    uart, at = engine([(b"AT+X\r", b"\r\nERROR\r\n"), (b"AT+CPIN?\r", b"\r\n+CME ERROR: 10\r\n"), (b"AT+Y\r", b"\r\n+CME ERROR:3\r\n")])
    e = raises(ATError, at.cmd, "AT+X")
    assert e.code is None and e.cmd == "AT+X"
    e = raises(ATError, at.cmd, "AT+CPIN?", info=b"+CPIN")
    assert e.code == 10 and "AT+CPIN?" in str(e) and "+CME ERROR: 10" in str(e)
    assert raises(ATError, at.cmd, "AT+Y").code == 3


def test_urc_before_cme_error_is_dispatched_not_taken_as_answer():
    seen = []
    uart, at = engine([(b"AT+SAPBR=1,1\r", b"\r\n+PDP: DEACT\r\n\r\n+CME ERROR: 3\r\n")])
    at.on(b"+PDP", lambda line, p: seen.append(line))
    e = raises(ATError, at.cmd, "AT+SAPBR=1,1", info=b"+SAPBR")
    assert e.code == 3
    assert seen == [b"+PDP: DEACT"]


def test_sapbr_urc_is_not_sapbr_information():
    seen = []
    reply = b'\r\n+SAPBR 1: DEACT\r\n\r\n+SAPBR: 1,1,"10.159.1.145"\r\n\r\nOK\r\n'
    uart, at = engine([(b"AT+SAPBR=2,1\r", reply)])
    at.on(b"+SAPBR 1: DEACT", lambda line, p: seen.append(line))
    assert at.cmd("AT+SAPBR=2,1", info=b"+SAPBR") == [b'+SAPBR: 1,1,"10.159.1.145"']
    assert seen == [b"+SAPBR 1: DEACT"]


def test_then_final_after_ok_with_urc_between():
    seen = []
    reply = [b"\r\nOK\r\n", 3, b"\r\n+CSQ: 20,99\r\n", 2, b"\r\nCONNECT OK\r\n"]
    uart, at = engine([(b'AT+MIPSTART="h",1883\r', reply)])
    at.on(b"+CSQ", lambda line, p: seen.append(line))
    at.cmd('AT+MIPSTART="h",1883', then=(b"CONNECT OK", b"ALREADY CONNECT", b"CONNECT FAIL"))
    assert at.final == b"CONNECT OK"
    assert seen == [b"+CSQ: 20,99"]


def test_http_action_urc_is_the_final_and_sapbr_deact_is_a_urc():
    seen = []
    reply = b"\r\nOK\r\n\r\n+SAPBR 1: DEACT\r\n\r\n+HTTPACTION: 1,601,0\r\n"
    uart, at = engine([(b"AT+HTTPACTION=1\r", reply)])
    at.on(b"+SAPBR", lambda line, p: seen.append(line))
    at.cmd("AT+HTTPACTION=1", then=(b"+HTTPACTION",))
    assert at.final == b"+HTTPACTION: 1,601,0"
    assert seen == [b"+SAPBR 1: DEACT"]


def test_error_after_ok_is_a_refusal():
    uart, at = engine([(b"AT+MCONNECT=1,300\r", b"\r\nOK\r\n\r\nERROR\r\n")])
    e = raises(ATError, at.cmd, "AT+MCONNECT=1,300", then=(b"CONNACK OK",))
    assert e.code is None and e.line == "ERROR"


def test_abort_urc_ends_wait_and_is_still_dispatched():
    seen = []
    uart, at = engine([(b"AT+MCONNECT=1,300\r", b"\r\nOK\r\n\r\nCLOSED\r\n")])
    at.on(b"CLOSED", lambda line, p: seen.append(line))
    e = raises(ATAbort, at.cmd, "AT+MCONNECT=1,300", then=(b"CONNACK OK",), abort=(b"CLOSED",))
    assert e.line == "CLOSED" and seen == [b"CLOSED"]


def test_default_aborts_apply_to_every_command():
    uart, at = engine([(b"AT+CSQ\r", b"\r\nRDY\r\n\r\n+CPIN: READY\r\n")])
    at.on(b"RDY", lambda line, p: None)
    at.on(b"+CPIN", lambda line, p: None)
    at.aborts = (b"RDY",)
    assert raises(ATAbort, at.cmd, "AT+CSQ", info=b"+CSQ").line == "RDY"


def test_download_prompt_body_written_after_prompt_only():
    body = b"productKey=a&sign=b"
    script = [
        (b"AT+HTTPDATA=19,20000\r", [2, b"\r\nDOWNLOAD\r\n"]),
        (body, [1, b"\r\nOK\r\n"]),
    ]
    uart, at = engine(script)
    at.cmd("AT+HTTPDATA=19,20000", data=body)
    assert bytes(uart.written) == b"AT+HTTPDATA=19,20000\r" + body
    assert uart.writes[1] == (len(b"\r\nDOWNLOAD\r\n"), body)


def test_gt_prompt_without_line_end():
    body = b'bin\x00\r\n"OK"\r\n'
    cmd = b'AT+MPUBEX="/a/b/user/update",0,0,' + str(len(body)).encode()
    uart, at = engine([(cmd + b"\r", b"\r\n> "), (body, b"\r\nOK\r\n")])
    at.cmd(cmd, data=body)
    assert uart.writes[1] == (4, body)
    assert uart.done()


def test_echoed_body_is_not_taken_for_the_reply():
    body = b"x\r\nOK\r\n"
    cmd = b'AT+MPUBEX="t",1,0,7'
    uart, at = engine([(cmd + b"\r", b"\r\n> "), (body, body + b"\r\nOK\r\n\r\nPUBACK\r\n")])
    at.cmd(cmd, data=body, then=(b"PUBACK",))
    assert at.final == b"PUBACK" and at.lines == []


def test_httpread_is_read_by_count():
    body = b'{"code":200,\r\nOK\r\n"data":{}}'
    reply = b"\r\n+HTTPREAD: " + str(len(body)).encode() + b"\r\n" + body + b"\r\nOK\r\n"
    uart, at = engine([(b"AT+HTTPREAD\r", reply)])
    at.counted(b"+HTTPREAD", b"\n")
    lines = at.cmd("AT+HTTPREAD", info=b"+HTTPREAD")
    assert at.payload == body
    assert lines == [b"+HTTPREAD: " + str(len(body)).encode()]


def test_msub_payload_with_crlf_commas_quotes_during_command():
    got = []
    reply = b"\r\nOK\r\n" + msub(b"/pk/dn/user/get", MSUB_PAYLOAD) + b"\r\nSUBACK\r\n"
    uart, at = engine([(b'AT+MSUB="/pk/dn/user/get",0\r', reply)])
    at.counted(b"+MSUB", b"byte,")
    at.on(b"+MSUB", lambda line, p: got.append((line, p)))
    at.cmd('AT+MSUB="/pk/dn/user/get",0', then=(b"SUBACK",))
    assert at.final == b"SUBACK"
    assert got == [(b'+MSUB: "/pk/dn/user/get",' + str(len(MSUB_PAYLOAD)).encode(), MSUB_PAYLOAD)]


def test_every_byte_boundary():
    stream = (
        b'AT+MPUB="/pk/dn/user/update",1,0,"hi"\r\r\n\r\nOK\r\n'
        + msub(b"/pk/dn/user/get", MSUB_PAYLOAD)
        + b"\r\n+PDP: DEACT\r\n"
        + msub(b"/pk/dn/user/get", b"")
        + b"\r\nPUBACK\r\n"
    )
    cmd = b'AT+MPUB="/pk/dn/user/update",1,0,"hi"'
    for chunk in range(1, len(stream) + 1):
        got = []
        uart, at = engine([(cmd + b"\r", stream)], chunk=chunk)
        at.counted(b"+MSUB", b"byte,")
        at.on(b"+MSUB", lambda line, p: got.append(p))
        at.on(b"+PDP", lambda line, p: got.append(line))
        assert at.cmd(cmd, then=(b"PUBACK",)) == [], chunk
        assert got == [MSUB_PAYLOAD, b"+PDP: DEACT", b""], (chunk, got)


def test_payload_longer_than_receive_buffer():
    payload = bytes(range(256)) * 3
    got = []
    uart, at = engine([], chunk=50, rxbuf=128)
    at.counted(b"+MSUB", b"byte,")
    at.on(b"+MSUB", lambda line, p: got.append(p))
    uart.feed(msub(b"/pk/dn/user/get", payload) + b"\r\nCLOSED\r\n")
    at.on(b"CLOSED", lambda line, p: got.append(line))
    for _ in range(40):
        at.poll()
    assert got == [payload, b"CLOSED"]


class CountingUART:
    """machine.UART as on rp2: any() counts the bytes there, and a readinto() allowed more
    than that would wait for them (timeout=0 still waits ~1 ms, timeout_char=0 reads on while
    bytes keep coming): each read's allowance is recorded, and one above what is there fails."""

    strict = True

    def __init__(self):
        self.rx = bytearray()
        self.reads = []

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        lim = len(buf) if nbytes is None else nbytes
        self.reads.append(lim)
        if self.strict:
            assert 0 < lim <= len(self.rx), (lim, len(self.rx))
        n = min(lim, len(self.rx), len(buf))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n or None

    def write(self, b):
        return len(b)


class NoAnyUART:
    """A UART-like without any() (a test stub, an adapter that cannot tell)."""

    strict = False
    __init__ = CountingUART.__init__
    readinto = CountingUART.readinto
    write = CountingUART.write


def test_reads_ask_for_what_any_counts_and_an_idle_poll_reads_nothing():
    got = []
    uart = CountingUART()
    at = AT(uart, rxbuf=128)
    at.counted(b"+MSUB", b"byte,")
    at.on(b"+MSUB", lambda line, p: got.append(p))
    at.on(b"CLOSED", lambda line, p: got.append(line))
    for _ in range(5):
        at.poll()
    assert uart.reads == []  # nothing there: no read at all
    uart.rx += b"\r\nCLOSED\r\n"
    at.poll()
    assert uart.reads == [10] and got == [b"CLOSED"]
    # a payload longer than the buffer, and a line after it, all there at once: the header
    # is read up to the buffer's room, the payload's rest by its own count, then the line
    payload = bytes(range(200))
    item = msub(b"/pk/dn/user/get", payload)
    uart.rx += item + b"\r\nCLOSED\r\n"
    del uart.reads[:]
    for _ in range(5):
        at.poll()
    assert got == [b"CLOSED", payload, b"CLOSED"]
    assert sum(uart.reads) == len(item) + 10 and uart.reads[0] == 128
    head = len(item) - len(payload) - 2  # the header before the payload's first byte
    assert uart.reads[1] == len(payload) - (128 - head)  # the payload's rest, not a byte beyond it


def test_a_uart_without_any_is_read_as_far_as_there_is_room():
    got = []
    uart = NoAnyUART()
    at = AT(uart, rxbuf=64)
    at.on(b"CLOSED", lambda line, p: got.append(line))
    at.poll()
    assert uart.reads == [64]
    uart.rx += b"\r\nCLOSED\r\n"
    at.poll()
    assert got == [b"CLOSED"] and uart.reads[:2] == [64, 64]


def test_truncated_payload_is_dropped_after_its_silence_and_engine_recovers():
    for rxbuf in (64, 1536):  # a payload longer than the buffer, and one that fits
        got = []
        uart, at = engine([(b"AT\r", b"\r\nOK\r\n")], rxbuf=rxbuf)
        clock = VirtualClock()
        at.ticks, at.sleep = clock.ticks, clock.sleep
        at.payload_ms = 20
        at.counted(b"+MSUB", b"byte,")
        at.on(b"+MSUB", lambda line, p: got.append(p))
        uart.feed(b'\r\n+MSUB: "t",500 byte,only a few')
        at.poll()
        assert at.stats["truncated"] == 0  # still arriving
        clock.advance(20)
        at.poll()
        assert got == [] and at.stats["truncated"] == 1
        at.cmd("AT")
        assert at.final == b"OK"


def test_a_streaming_payload_is_held_into_few_reads_and_the_line_after_it_is_not():
    for rxbuf in (256, 1536):  # a payload longer than the buffer, and one that fits
        got = []
        uart = CountingUART()
        at = AT(uart, rxbuf=rxbuf)
        clock = VirtualClock()
        at.ticks, at.sleep = clock.ticks, clock.sleep
        at.counted(b"+MSUB", b"byte,")
        at.on(b"+MSUB", lambda line, p: got.append(p))
        at.on(b"CLOSED", lambda line, p: got.append(line))
        payload = bytes(range(250)) * 4
        item = msub(b"/pk/dn/user/get", payload)
        for i in range(0, len(item), 11):  # 11 bytes a ms: faster than 115200 baud's wire
            uart.rx += item[i : i + 11]
            at.poll()
            clock.advance(1)
        for _ in range(30):
            at.poll()
            clock.advance(1)
        assert got == [payload], rxbuf
        # without the hold: a read per poll, ~95; with it: the header's 4 pieces (a line is
        # never held), then one per 256 bytes of the payload (its last: the rest)
        assert len(uart.reads) <= 4 + 5, (rxbuf, uart.reads)
        assert sum(uart.reads) == len(item)
        uart.rx += b"\r\nCLOSED\r\n"  # a line is never held: the first poll takes it
        at.poll()
        assert got == [payload, b"CLOSED"]


def test_a_held_payload_that_stalls_is_dropped_when_it_would_be_unheld():
    # payload_ms from the last byte seen arriving, as without the hold (not from a late read)
    for late in (0, 10):
        uart = CountingUART()
        at = AT(uart)
        clock = VirtualClock()
        at.ticks, at.sleep = clock.ticks, clock.sleep
        at.payload_ms = 50
        at.counted(b"+MSUB", b"byte,")
        uart.rx += b'\r\n+MSUB: "t",500 byte,only a few'
        for ms in range(late + 50):
            if late and ms == late:
                uart.rx += b"more"  # held (the hold is 25 ms here): seen, not yet read
            at.poll()
            assert at.stats["truncated"] == 0, (late, ms)
            clock.advance(1)
        at.poll()
        assert at.stats["truncated"] == 1, late


def test_poll_returns_at_once_and_dispatches():
    seen = []
    uart, at = engine([])
    at.on(b"CLOSED", lambda line, p: seen.append(line))
    at.poll()
    assert seen == []
    uart.feed(b"\r\nCLOSED\r\n")
    at.poll()
    assert seen == [b"CLOSED"]


def test_unknown_line_is_logged():
    cap = capture_log()
    try:
        uart, at = engine([])
        uart.feed(b"\r\nWHAT IS THIS\r\n")
        at.poll()
        assert at.stats["unknown"] == 1
        assert "WHAT IS THIS" in cap.text()
    finally:
        release_log()


def test_overlong_garbage_is_discarded_and_engine_keeps_working():
    cap = capture_log()
    try:
        uart, at = engine([(b"AT\r", b"\r\nOK\r\n")], rxbuf=64)
        uart.feed(bytes(range(14, 250)) + b"more garbage\r\n")
        at.poll()
        assert at.stats["discarded"] == 1
        assert "longer than 64" in cap.text()
        at.cmd("AT")
        assert at.final == b"OK"
    finally:
        release_log()


def test_garbage_line_inside_a_reply_does_not_break_it():
    uart, at = engine([(b"AT+CSQ\r", b"\r\n\xff\x00\xfe\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n")])
    lines = at.cmd("AT+CSQ", info=b"+CSQ")
    assert b"+CSQ: 20,99" in lines


def test_bad_count_is_an_ordinary_line_and_the_next_item_is_read():
    got = []
    uart, at = engine([(b"AT\r", b"\r\nOK\r\n")])
    at.counted(b"+MSUB", b"byte,")
    at.on(b"+MSUB", lambda line, p: got.append((line, p)))
    uart.feed(b'\r\n+MSUB: "t",x1 byte,abc\r\n' + msub(b"t", b"ok"))
    at.poll()
    assert got == [(b'+MSUB: "t",x1 byte,abc', None), (b'+MSUB: "t",2', b"ok")]
    at.cmd("AT")


def test_timeout_names_command_and_never_hangs():
    uart, at = engine([(b"AT+CSQ\r", b"\r\n+CSQ: 2")])
    e = raises(ATTimeout, at.cmd, "AT+CSQ", timeout=30)
    assert e.cmd == "AT+CSQ" and e.ms == 30 and "AT+CSQ" in str(e)
    assert at.stats["timeouts"] == 1


def test_timeout_says_which_final_was_missing():
    uart, at = engine([(b"AT+MSUB=\"t\",0\r", b"\r\nOK\r\n")])
    e = raises(ATTimeout, at.cmd, 'AT+MSUB="t",0', timeout=20, then=(b"SUBACK",))
    assert "SUBACK" in str(e)


def test_label_hides_credentials():
    uart, at = engine([(b'AT+MCONFIG="c","u","s3cr3t"\r', b"\r\nERROR\r\n")])
    e = raises(ATError, at.cmd, 'AT+MCONFIG="c","u","s3cr3t"', label="AT+MCONFIG")
    assert "s3cr3t" not in str(e)


def test_handler_exception_does_not_escape():
    cap = capture_log()
    try:
        uart, at = engine([(b"AT\r", b"\r\nCLOSED\r\n\r\nOK\r\n")])

        def bad(line, p):
            raise ValueError("boom")

        at.on(b"CLOSED", bad)
        at.cmd("AT")
        assert "boom" in cap.text()
    finally:
        release_log()


def test_command_from_a_handler_is_refused():
    errors = []
    uart, at = engine([(b"AT\r", b"\r\nCLOSED\r\n\r\nOK\r\n")])

    def nested(line, p):
        try:
            at.cmd("AT+CSQ")
        except ModemError as e:
            errors.append(str(e))

    at.on(b"CLOSED", nested)
    at.cmd("AT")
    assert len(errors) == 1 and "in flight" in errors[0]


def test_stale_line_before_command_is_not_its_answer():
    seen = []
    uart, at = engine([(b"AT+CSQ\r", b"\r\n+CSQ: 25,99\r\n\r\nOK\r\n")])
    at.on(b"+CSQ", lambda line, p: seen.append(line))
    uart.feed(b"\r\n+CSQ: 1,99\r\n")
    assert at.cmd("AT+CSQ", info=b"+CSQ") == [b"+CSQ: 25,99"]
    assert seen == [b"+CSQ: 1,99"]
