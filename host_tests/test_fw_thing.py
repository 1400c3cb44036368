# The thing model (firmware/thing.py) against a stub link: posts and their replies,
# timeouts, property sets and service calls answered on the right _reply topic, and
# downlinks that must never crash it. Runs under CPython and MicroPython.
import json

from fwtest import capture_log

from firmware import log
from firmware.aliyun import Topics
from firmware.port import ticks_add
from firmware.thing import BAD_PARAMS, ERROR, OK, TIMEOUT, Thing

PK, DN = "a1Pk", "dev1"
T = Topics(PK, DN)


class StubLink:
    def __init__(self, accept=True):
        self.published = []  # (topic, payload str, qos)
        self.subscriptions = []
        self.accept = accept
        self.up = True

    def publish(self, topic, payload, qos=0):
        self.published.append((topic, payload, qos))
        return self.accept

    def subscribe(self, topic, qos=0):
        self.subscriptions.append((topic, qos))

    def last(self):
        t, p, q = self.published[-1]
        return t, json.loads(p), q


class Clock:
    def __init__(self):
        self.now = 1000

    def __call__(self):
        return self.now


def make(**kw):
    link = StubLink(**kw)
    th = Thing(link, T, timeout_ms=5000)
    clock = Clock()
    th.ticks = clock
    return link, th, clock


def done():
    log.sink = None


def b(obj):
    return json.dumps(obj).encode()


def test_subscribes_reply_and_set_topics():
    link, th, _ = make()
    assert (T.property_post_reply, 0) in link.subscriptions
    assert (T.property_set, 0) in link.subscriptions


def test_post_properties_alink_json_and_string_ids():
    link, th, _ = make()
    rid = th.post_properties({"temp": 21.5})
    assert rid == "1"
    topic, msg, qos = link.last()
    assert topic == "/sys/a1Pk/dev1/thing/event/property/post" and qos == 1
    assert msg == {"id": "1", "version": "1.0", "params": {"temp": 21.5}, "method": "thing.event.property.post"}
    assert th.post_properties({"temp": 1}) == "2"
    assert th.pending() == 2


def test_reply_matched_to_its_request():
    link, th, _ = make()
    got = []
    cb = lambda rid, code, data: got.append((rid, code, data))  # noqa: E731
    r1 = th.post_properties({"a": 1}, cb)
    r2 = th.post_properties({"a": 2}, cb)
    assert th.handle(T.property_post_reply, b({"id": r2, "code": 200, "data": {}, "message": "success"}))
    assert got == [(r2, 200, {})]
    assert th.handle(T.property_post_reply, b({"id": r1, "code": 6106, "data": {}, "message": "too many properties"}))
    assert got[1] == (r1, 6106, {})
    assert th.pending() == 0


def test_reply_numeric_id_and_error_logged_without_callback():
    link, th, _ = make()
    cap = capture_log()
    try:
        th.post_properties({"a": 1})
        th.post_properties({"a": 2})
        th.handle(T.property_post_reply, b'{"id":1,"code":200,"data":{}}')
        th.handle(T.property_post_reply, b'{"id":"2","code":6300,"message":"bad params"}')
    finally:
        done()
    text = cap.text()
    assert "thing.event.property.post 1: code 200" in text
    assert "thing.event.property.post 2: code 6300 (bad params)" in text


def test_timeout_reported_once():
    link, th, clock = make()
    got = []
    rid = th.post_properties({"a": 1}, lambda *a: got.append(a))
    clock.now += 4999
    th.poll()
    assert got == []
    clock.now += 1
    th.poll()
    assert got == [(rid, TIMEOUT, None)]
    th.poll()
    assert len(got) == 1 and th.pending() == 0
    cap = capture_log()
    try:  # the late reply is only logged
        th.handle(T.property_post_reply, b({"id": rid, "code": 200}))
    finally:
        done()
    assert "not pending" in cap.text() and len(got) == 1


def test_timeouts_across_the_ticks_wrap():
    link, th, clock = make()
    start = ticks_add(0, -100)  # just before the wrap, whatever the port's period
    clock.now = start
    got = []
    th.post_properties({"a": 1}, lambda *a: got.append(a))
    clock.now = ticks_add(start, 300)  # wrapped
    assert clock.now < start
    th.poll()
    assert got == []
    clock.now = ticks_add(start, 5000)
    th.poll()
    assert got and got[0][1] == TIMEOUT


def test_pending_table_is_bounded():
    link, th, clock = make()
    got = []
    ids = []
    for i in range(17):
        clock.now += 1
        ids.append(th.post_properties({"i": i}, lambda *a: got.append(a)))
    assert th.pending() == 16
    assert got == [(ids[0], TIMEOUT, None)]


def test_refused_publish_returns_none():
    link, th, _ = make(accept=False)
    cap = capture_log()
    try:
        assert th.post_properties({"a": 1}) is None
    finally:
        done()
    assert th.pending() == 0 and "not sent" in cap.text()


def test_event_post_subscribes_its_reply_once():
    link, th, _ = make()
    got = []
    r = th.post_event("alarm", {"level": 2}, lambda *a: got.append(a))
    th.post_event("alarm", {"level": 3})
    topic, msg, _ = link.published[0][0], json.loads(link.published[0][1]), 0
    assert topic == "/sys/a1Pk/dev1/thing/event/alarm/post"
    assert msg["method"] == "thing.event.alarm.post" and msg["params"] == {"level": 2}
    assert link.subscriptions.count(("/sys/a1Pk/dev1/thing/event/alarm/post_reply", 0)) == 1
    assert th.handle("/sys/a1Pk/dev1/thing/event/alarm/post_reply", b({"id": r, "code": 200, "data": {}}))
    assert got == [(r, 200, {})]


def test_property_set_handler_and_reply_with_same_id():
    link, th, _ = make()
    seen = []
    th.on_set(lambda params: seen.append(params))
    assert th.handle(T.property_set, b({"method": "thing.service.property.set", "id": "1234",
                                        "params": {"LightSwitch": 1}, "version": "1.0"}))
    assert seen == [{"LightSwitch": 1}]
    topic, msg, qos = link.last()
    assert topic == "/sys/a1Pk/dev1/thing/service/property/set_reply" and qos == 0
    assert msg == {"id": "1234", "code": OK, "data": {}}


def test_property_set_handler_code_and_failures():
    link, th, _ = make()
    th.on_set(lambda params: 460 if "bad" in params else None)
    th.handle(T.property_set, b({"id": "1", "params": {"bad": 1}}))
    assert link.last()[1]["code"] == 460

    def boom(params):
        raise RuntimeError("sensor offline")

    th.on_set(boom)
    cap = capture_log()
    try:
        th.handle(T.property_set, b({"id": "2", "params": {"x": 1}}))
    finally:
        done()
    assert link.last()[1] == {"id": "2", "code": ERROR, "data": {}, "message": "handler failed"}
    assert "property set handler failed for 2" in cap.text() and "sensor offline" in cap.text()
    th.handle(T.property_set, b({"id": "3", "params": [1, 2]}))
    assert link.last()[1]["code"] == BAD_PARAMS
    th.on_set(lambda params: "yes")  # not a code
    th.handle(T.property_set, b({"id": "4", "params": {}}))
    assert link.last()[1]["code"] == ERROR


def test_property_set_without_handler_is_answered():
    link, th, _ = make()
    th.handle(T.property_set, b({"id": "9", "params": {"a": 1}}))
    assert link.last()[1]["code"] == ERROR and link.last()[1]["id"] == "9"


def test_bad_downlinks_are_logged_never_raised():
    link, th, _ = make()
    th.on_set(lambda p: None)
    th.on_service("reboot", lambda p: None)
    cap = capture_log()
    try:
        for topic in (T.property_set, T.property_post_reply, T.service("reboot")):
            for payload in (b"{not json", b"\xff\xfe\x00", b"[1,2]", b"", b'"str"', b"null"):
                assert th.handle(topic, payload) is True
        th.handle(T.property_set, b'{"params":{}}')  # no id: nothing to answer
    finally:
        done()
    assert link.published == []
    text = cap.text()
    assert "bad JSON on /sys/a1Pk/dev1/thing/service/property/set" in text
    assert "without an id" in text


def test_service_call_and_reply():
    link, th, _ = make()
    th.on_service("reboot", lambda params: (200, {"delay": params["delay"]}))
    assert (T.service("reboot"), 0) in link.subscriptions
    assert th.handle("/sys/a1Pk/dev1/thing/service/reboot", b({"id": "77", "params": {"delay": 5},
                                                              "method": "thing.service.reboot"}))
    topic, msg, qos = link.last()
    assert topic == "/sys/a1Pk/dev1/thing/service/reboot_reply"
    assert msg == {"id": "77", "code": 200, "data": {"delay": 5}}


def test_service_return_shapes_and_failures():
    link, th, _ = make()
    th.on_service("a", lambda p: {"x": 1})
    th.on_service("b", lambda p: None)
    th.on_service("c", lambda p: 100001)
    th.on_service("d", lambda p: p["missing"])
    th.on_service("e", lambda p: (200, {"f": object()}))  # not JSON
    cap = capture_log()
    try:
        out = []
        for ident in "abcde":
            th.handle(T.service(ident), b({"id": ident, "params": {}}))
            out.append(link.last())
    finally:
        done()
    assert [o[0] for o in out] == [T.service_reply(i) for i in "abcde"]
    assert out[0][1] == {"id": "a", "code": 200, "data": {"x": 1}}
    assert out[1][1] == {"id": "b", "code": 200, "data": {}}
    assert out[2][1]["code"] == 100001
    assert out[3][1]["code"] == ERROR and "service d handler failed" in cap.text()
    assert out[4][1]["code"] == ERROR


def test_unknown_topics_are_not_taken():
    link, th, _ = make()
    assert th.handle(T.get, b"hello") is False
    assert th.handle(T.service("unknown"), b({"id": "1"})) is False
    assert th.handle(T.ntp_response, b"{}") is False


def test_callback_exception_is_contained():
    link, th, _ = make()

    def bad(*a):
        raise ValueError("oops")

    rid = th.post_properties({"a": 1}, bad)
    cap = capture_log()
    try:
        th.handle(T.property_post_reply, b({"id": rid, "code": 200}))
    finally:
        done()
    assert "callback for thing.event.property.post 1 failed" in cap.text()


def test_report_version():
    link, th, _ = make()
    rid = th.report_version("1.2.3")
    topic, msg, qos = link.last()
    assert topic == "/ota/device/inform/a1Pk/dev1" and qos == 1
    assert msg == {"id": rid, "params": {"version": "1.2.3"}}


def test_ids_wrap_and_stay_strings():
    link, th, _ = make()
    th._id = 999999998
    assert th.next_id() == "999999999"
    assert th.next_id() == "1"
