# NTP over MQTT (firmware/ntp.py) with a stub link and a fake device clock: the request,
# Aliyun's formula, stale and bad responses, retries, the resync interval, now_ms() and the
# RTC tuple for both board epochs. Runs under CPython and MicroPython.
import json

from fwtest import LogCapture

from firmware import log, ntp
from firmware.aliyun import Topics
from firmware.port import ticks_add

T = Topics("a1Pk", "dev1")


class StubLink:
    def __init__(self):
        self.published = []
        self.subscriptions = []
        self.up = True

    def publish(self, topic, payload, qos=0):
        if not self.up:
            return False
        self.published.append((topic, payload, qos))
        return True

    def subscribe(self, topic, qos=0):
        self.subscriptions.append((topic, qos))


class Clock:
    def __init__(self, now=5000):
        self.now = now

    def __call__(self):
        return self.now


def setup(now=5000, interval_s=3600):
    clock = Clock(now)
    ntp.clock = clock
    ntp.forget()
    link = StubLink()
    n = ntp.Ntp(link, T, interval_s=interval_s, timeout_ms=10000)
    return link, n, clock


def teardown():
    ntp.clock = ntp.ticks_ms
    ntp.forget()
    log.sink = None


def response(sent, recv, send):
    return json.dumps({"deviceSendTime": str(sent), "serverRecvTime": str(recv), "serverSendTime": str(send)}).encode()


def test_request_topic_payload_qos0():
    link, n, clock = setup()
    try:
        assert (T.ntp_response, 0) in link.subscriptions
        n.on_up()
        assert link.published == [("/ext/ntp/a1Pk/dev1/request", '{"deviceSendTime":"5000"}', 0)]
    finally:
        teardown()


def test_formula_and_now_ms():
    link, n, clock = setup()
    try:
        assert ntp.now_ms() is None and not ntp.synced()
        n.on_up()  # deviceSendTime 5000
        clock.now = 5300  # 300 ms round trip
        server_recv, server_send = 1700000000100, 1700000000110
        assert n.handle(T.ntp_response, response(5000, server_recv, server_send))
        # (serverRecvTime + serverSendTime + deviceRecvTime - deviceSendTime) / 2
        expect = (server_recv + server_send + 5300 - 5000) // 2
        assert ntp.now_ms() == expect == 1700000000255
        clock.now = 6300
        assert ntp.now_ms() == expect + 1000
        assert ntp.synced()
    finally:
        teardown()


def test_numbers_as_well_as_strings():
    link, n, clock = setup()
    try:
        n.request()
        clock.now += 100
        n.handle(T.ntp_response, b'{"deviceSendTime":5000,"serverRecvTime":1000000,"serverSendTime":1000000}')
        assert ntp.now_ms() == 1000050
    finally:
        teardown()


def test_across_the_ticks_wrap():
    start = ticks_add(0, -50)
    link, n, clock = setup(now=start)
    try:
        n.request()
        clock.now = ticks_add(start, 100)
        n.handle(T.ntp_response, response(start, 2000000, 2000000))
        assert ntp.now_ms() == 2000050
        clock.now = ticks_add(start, 1100)
        assert ntp.now_ms() == 2001050
    finally:
        teardown()


def test_stale_and_bad_responses_do_not_set_the_time():
    link, n, clock = setup()
    cap = LogCapture()
    log.sink = cap.write
    try:
        n.request()
        assert n.handle(T.ntp_response, response(4000, 1, 1))  # another request's answer
        assert n.handle(T.ntp_response, b"{nope")
        assert n.handle(T.ntp_response, b'{"deviceSendTime":"5000"}')
        assert n.handle(T.ntp_response, b'{"deviceSendTime":"x","serverRecvTime":1,"serverSendTime":2}')
        assert n.handle(T.ntp_response, b"[]")
        assert not ntp.synced()
        assert not n.handle(T.get, b"{}")
        text = cap.text()
        assert "ignored" in text and "bad JSON on /ext/ntp/a1Pk/dev1/response" in text
        assert "without deviceSendTime" in text and "not a JSON object" in text
    finally:
        teardown()


def test_retry_then_resync_interval():
    link, n, clock = setup(interval_s=60)
    cap = LogCapture()
    log.sink = cap.write
    try:
        n.on_up()
        clock.now += 9999
        n.poll()
        assert len(link.published) == 1
        clock.now += 1
        n.poll()  # no answer in 10 s: ask again
        assert len(link.published) == 2 and "no response in 10000 ms" in cap.text()
        sent = clock.now
        clock.now += 50
        n.handle(T.ntp_response, response(sent, 10 ** 12, 10 ** 12))
        assert ntp.synced()
        clock.now += 59000
        n.poll()
        assert len(link.published) == 2
        clock.now += 1000
        n.poll()  # the hourly (here: 60 s) resync
        assert len(link.published) == 3
        link.up = False
        clock.now += 100000
        n.poll()  # link down: nothing sent (on_up asks at the reconnect)
        assert len(link.published) == 3
    finally:
        teardown()


def test_rebase_keeps_the_time():
    link, n, clock = setup()
    try:
        ntp.set_time(10 ** 12, 5000)
        clock.now = ticks_add(5000, 86400000 + 7)
        assert ntp.now_ms() == 10 ** 12 + 86400007
        clock.now = ticks_add(clock.now, 10)
        assert ntp.now_ms() == 10 ** 12 + 86400017
    finally:
        teardown()


def test_rtc_tuple_both_epochs():
    ms = 1700000000123  # 2023-11-14 22:13:20 UTC, a Tuesday (weekday 1)
    unix = ntp.rtc_tuple(ms, 0)
    assert unix == (2023, 11, 14, 1, 22, 13, 20, 0)
    import time

    def esp32_gmtime(secs):  # an ESP32's gmtime counts from 2000-01-01
        return time.gmtime(secs + ntp.UNIX_2000)

    assert ntp.rtc_tuple(ms, ntp.UNIX_2000, esp32_gmtime) == unix
    assert ntp.epoch_offset() == 0  # CPython and the unix port count from 1970
    assert ntp.iso(ms) == "2023-11-14 22:13:20 UTC"


def test_no_rtc_on_the_host():
    assert ntp.set_rtc(1700000000000) is False  # CPython and the unix port: offset only
