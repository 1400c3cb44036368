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
