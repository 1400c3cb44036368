# What the app hands to the link, checked at the door: a topic or payload of the wrong type
# or shape is the caller's error (TypeError / ValueError naming it) and never enters the
# QoS 1 outbox, where it used to fail as a "bug" on every send and block the queue for ever.
# The real driver over the stub UART; runs under CPython and MicroPython.
from fwtest import StubUART, VirtualClock, raises

from firmware import aliyun
from firmware.air72x import Air72x
from firmware.config import check
from firmware.link import UP, Link

PK, DN = "a1DemoPk001", "demo-device-1"
TOPIC = "/%s/%s/user/update" % (PK, DN)
OK = b"\r\nOK\r\n"


def link_up(script=()):
    uart = StubUART(script)
    modem = Air72x(uart)
    clock = VirtualClock()
    modem.at.ticks, modem.at.sleep = clock.ticks, clock.sleep
    cfg = check({"product_key": PK, "device_name": DN, "device_secret": "s" * 32})
    link = Link(modem, cfg, aliyun.Topics(PK, DN))
    link.ticks = clock.ticks  # one clock for the link and the engine
    link._last_rx = link._up_since = link._next = clock.ticks()
    link.state = UP
    modem.mqtt_connected = True
    modem.bearer_up = True
    modem.version, modem.version_number = "AirM2M_Air724UG_V409_LTE_AT", 409
    return link, modem, uart


def test_wrong_types_are_a_type_error_to_the_caller_and_nothing_is_queued():
    link, modem, uart = link_up()
    for qos in (0, 1):
        for payload in (5, {"t": 1}, None, 2.5, [b"x"]):
            raises(TypeError, link.publish, TOPIC, payload, qos)
        for topic in (None, 7, (TOPIC,)):
            raises(TypeError, link.publish, topic, b"x", qos)
    assert len(link.outbox) == 0 and link.counters["queued"] == 0 and link.counters["qos0_dropped"] == 0
    assert bytes(uart.written) == b""


def test_bad_topics_and_oversized_payloads_are_a_value_error_and_nothing_is_queued():
    link, modem, uart = link_up()
    for qos in (0, 1):
        for topic in ("", "/a\x00b", "/a\rb", "/a/+", "/a/#", "/" + "x" * 200, b"/\xfe"):
            raises(ValueError, link.publish, topic, b"x", qos)
        raises(ValueError, link.publish, TOPIC, b"x" * 9000, qos)
        raises(ValueError, link.publish, TOPIC, b"x", 2)
        raises(ValueError, link.publish, TOPIC, b"x", True)
    assert len(link.outbox) == 0 and link.counters["queued"] == 0
    assert bytes(uart.written) == b""


def test_a_good_message_after_bad_ones_goes_out_and_the_queue_is_not_blocked():
    pub = b'AT+MPUB="' + TOPIC.encode() + b'",1,0,"ok"\r'
    link, modem, uart = link_up([(pub, [OK, b"\r\nPUBACK\r\n"])])
    raises(TypeError, link.publish, TOPIC, {"not": "json yet"}, 1)
    assert link.publish(TOPIC, "ok", 1)
    link.step()
    assert uart.done() and link.counters["acked"] == 1 and len(link.outbox) == 0


def test_a_bytearray_payload_is_copied_when_queued():
    pub = b'AT+MPUB="' + TOPIC.encode() + b'",1,0,"abc"\r'
    link, modem, uart = link_up([(pub, [OK, b"\r\nPUBACK\r\n"])])
    buf = bytearray(b"abc")
    link.publish(TOPIC, buf, 1)
    buf[0] = 0x5A  # the caller reuses its buffer before the message went out
    link.step()
    assert uart.done() and link.counters["acked"] == 1


def test_subscribe_checks_the_topic_but_allows_wildcards():
    link, modem, uart = link_up([(b'AT+MSUB="/%s/%s/user/#",0\r' % (PK.encode(), DN.encode()), [OK, b"\r\nSUBACK\r\n"])])
    raises(ValueError, link.subscribe, "/a\nb")
    raises(TypeError, link.subscribe, 5)
    link.subscribe("/%s/%s/user/#" % (PK, DN))
    assert uart.done()


def _msub(topic, payload):
    return b'\r\n+MSUB: "' + topic + b'",%d byte,' % len(payload) + payload + b"\r\n"


def test_a_qos1_publish_does_not_hold_downlinks_until_its_puback():
    # the module answers OK, then a burst of downlinks, then the PUBACK: the downlinks reach
    # the app while the message waits for its PUBACK, never piled up inside one command
    got = []
    pub = b'AT+MPUB="' + TOPIC.encode() + b'",1,0,"m"\r'
    get = ("/%s/%s/user/get" % (PK, DN)).encode()
    burst = b"".join(_msub(get, b"d%03d" % i + b"." * 300) for i in range(80))  # 26 KB
    link, modem, uart = link_up([(pub, [OK, 40, burst, 40, b"\r\nPUBACK\r\n"])])
    link.on_message = lambda t, p: got.append(p[:4])
    link.publish(TOPIC, "m", 1)
    for _ in range(2000):
        link.step()
        modem.at.sleep(1)
        if link.counters["acked"]:
            break
    assert uart.done() and link.counters["acked"] == 1 and len(link.outbox) == 0
    assert got == [b"d%03d" % i for i in range(80)] and modem.stats["downlinks_dropped"] == 0


def test_no_new_publish_is_sent_while_the_module_is_sending():
    pub = b'AT+MPUB="' + TOPIC.encode() + b'",1,0,"m"\r'
    link, modem, uart = link_up([(pub, [OK, b"\r\nPUBACK\r\n"])])
    link.on_message = lambda t, p: None
    link.publish(TOPIC, "m", 1)
    uart.feed(_msub(("/%s/%s/user/get" % (PK, DN)).encode(), b"x"))
    link.step()  # the downlink just came: the publish waits for a quiet line
    assert bytes(uart.written) == b"" and len(link.outbox) == 1
    modem.at.sleep(40)
    link.step()
    assert uart.done() and link.counters["acked"] == 1


def test_a_puback_that_never_comes_takes_the_link_down_and_keeps_the_message():
    pub = b'AT+MPUB="' + TOPIC.encode() + b'",1,0,"m"\r'
    link, modem, uart = link_up([(pub, OK)])
    link.publish(TOPIC, "m", 1)
    link.step()
    assert link.up and len(link.outbox) == 1
    link.status_ms = 60000  # no MQTTSTATU probe in between (unscripted here)
    modem.at.sleep(15000)
    link.step()
    assert not link.up and len(link.outbox) == 1 and link.counters["unacked"] == 1
    assert link.counters["faults"].get("link") == 1


def test_a_handler_called_inside_a_command_may_publish_and_subscribe_through_the_link():
    # a burst bigger than the budget inside one command's wait: the oldest downlinks reach
    # the handler early; its QoS 0 answer and its subscription are sent by the next step
    get = ("/%s/%s/user/get" % (PK, DN)).encode()
    burst = b"".join(_msub(get, b"d%03d" % i + b"." * 400) for i in range(50))  # 20 KB
    answer = b'AT+MPUB="' + TOPIC.encode() + b'",0,0,"pong"\r'
    sub = b'AT+MSUB="/%s/%s/user/cmd",0\r' % (PK.encode(), DN.encode())
    link, modem, uart = link_up([(b"AT+MQTTSTATU\r", [burst, b"\r\n+MQTTSTATU :1\r\n\r\nOK\r\n"]),
                                 (answer, OK), (sub, [OK, b"\r\nSUBACK\r\n"])])
    calls = []

    def handler(topic, payload):
        calls.append(modem.busy())
        if len(calls) == 1:
            assert link.publish(TOPIC, "pong", 0) is True
            link.subscribe("/%s/%s/user/cmd" % (PK, DN))

    link.on_message = handler
    link.status_ms = 0  # the step asks AT+MQTTSTATU at once
    link.step()
    assert calls[0] is True and modem.stats["early"] > 0  # inside the wait, and not dropped
    assert uart.written.count(b"AT+MPUB") == 0
    link.status_ms = 60000
    link.step()
    assert uart.done() and len(calls) == 50 and modem.stats["downlinks_dropped"] == 0
    assert link.counters["qos0_sent"] == 1
