# The device shadow (firmware/shadow.py) against a stub link: the JSON of report / get /
# delete byte for byte, the version rules (an older or equal control ignored, a newer one
# applied, reported and desired cleared in one update), a 409 answered by one get() and
# one resend, bad JSON and wrong shapes from the cloud, an oversized document, a handler
# that raises or returns a bad type, and what report() refuses at the door. Runs under
# CPython and MicroPython.
import json

from fwtest import PublishLink, logged, raises

from firmware.aliyun import Topics
from firmware.shadow import Shadow

PK, DN = "a1DemoPk001", "demo-device-1"
T = Topics(PK, DN)
UPDATE = "/shadow/update/a1DemoPk001/demo-device-1"
GET = "/shadow/get/a1DemoPk001/demo-device-1"


def sent(link):
    return [json.loads(p) for t, p, q in link.published]


def make():
    link = PublishLink()
    return link, Shadow(link, T)


def b(obj):
    return json.dumps(obj).encode()


def control(version, desired, reported=None):
    state = {"desired": desired}
    if reported is not None:
        state["reported"] = reported
    return b({"method": "control", "payload": {"status": "success", "state": state, "metadata": {}},
              "version": version, "timestamp": 1469564576})


def get_reply(version, reported=None, desired=None):
    state = {}
    if reported is not None:
        state["reported"] = reported
    if desired is not None:
        state["desired"] = desired
    return b({"method": "reply", "payload": {"status": "success", "state": state, "metadata": {}},
              "version": version, "timestamp": 1469564576})


def update_reply(version):
    return b({"method": "reply", "payload": {"status": "success", "version": version}, "timestamp": 1469564576})


def error_reply(code, message="version conflict"):
    return b({"method": "reply", "payload": {"status": "error", "content": {"errorcode": code, "errormessage": message}},
              "timestamp": 1469564576})


def test_topics_and_subscription():
    assert T.shadow_update == UPDATE and T.shadow_get == GET
    link, _ = make()
    assert link.subscriptions == [(GET, 1)]


def test_report_get_delete_json_and_versions():
    link, sh = make()
    assert sh.report({"color": "red"}) == 1
    assert json.loads(link.published[-1][1]) == {"method": "update", "state": {"reported": {"color": "red"}}, "version": 1}
    assert link.published[-1][0] == UPDATE and link.published[-1][2] == 1
    assert sh.report({"color": "blue"}) == 2  # above any version sent, before any reply
    assert sh.get() is True
    assert link.published[-1] == (UPDATE, '{"method":"get"}', 1)
    assert sh.delete(["color", "t"]) == 3
    assert sh.delete() == 4
    assert sh.report({"a": 1}, clear_desired=True) == 5
    assert sent(link)[3:] == [
        {"method": "delete", "state": {"reported": {"color": "null", "t": "null"}}, "version": 3},
        {"method": "delete", "state": {"reported": "null"}, "version": 4},
        {"method": "update", "state": {"reported": {"a": 1}, "desired": "null"}, "version": 5},
    ]


def test_update_reply_moves_the_version():
    link, sh = make()
    sh.report({"x": 1})
    assert sh.handle(GET, update_reply(1)) is True
    assert sh.version == 1
    sh.handle(GET, update_reply(0))  # an older answer does not move it back
    assert sh.version == 1


def test_newer_control_is_applied_reported_and_desired_cleared():
    link, sh = make()
    seen = []
    sh.on_desired = lambda d: seen.append(d)
    sh.handle(GET, get_reply(4, {"color": "red"}))
    assert sh.version == 4 and sh.reported == {"color": "red"} and seen == []
    with logged():
        assert sh.handle(GET, control(5, {"color": "green"}, {"color": "red"})) is True
    assert seen == [{"color": "green"}]
    assert sent(link)[-1] == {"method": "update", "state": {"reported": {"color": "green"}, "desired": "null"}, "version": 6}
    assert sh.reported == {"color": "green"} and sh.desired is None and sh.timestamp == 1469564576
    assert sh.counters["controls"] == 1


def test_handler_may_report_what_it_applied():
    link, sh = make()
    sh.on_desired = lambda d: {"color": "green", "note": "clamped"}
    with logged():
        sh.handle(GET, control(2, {"color": "green", "bright": 900}))
    assert sent(link)[-1]["state"] == {"reported": {"color": "green", "note": "clamped"}, "desired": "null"}


def test_control_not_newer_is_ignored():
    link, sh = make()
    seen = []
    sh.on_desired = lambda d: seen.append(d)
    with logged() as lines:
        sh.handle(GET, control(3, {"color": "green"}))
        n = len(link.published)
        sh.handle(GET, control(3, {"color": "green"}))  # the same again (QoS 1 duplicate)
        sh.handle(GET, control(2, {"color": "blue"}))  # overtaken
    assert seen == [{"color": "green"}] and len(link.published) == n
    assert sh.counters["ignored"] == 2 and sh.version == 3
    assert len([line for line in lines if "is not newer than 3: ignored" in line]) == 2


def test_get_reply_with_a_newer_desired_applies_it_the_same_version_only_refreshes():
    link, sh = make()
    seen = []
    sh.on_desired = lambda d: seen.append(d)
    with logged():
        sh.handle(GET, get_reply(7, {"a": 1}, {"a": 2}))
    assert seen == [{"a": 2}] and sent(link)[-1]["version"] == 8
    sh.handle(GET, get_reply(8, {"a": 2}))
    assert sh.version == 8 and sh.reported == {"a": 2}
    sh.handle(GET, get_reply(8, {"a": 2}, {"a": 5}))  # not newer: refreshed, not applied
    assert seen == [{"a": 2}]
    sh.handle(GET, get_reply(6, {"a": 0}))  # older: ignored
    assert sh.reported == {"a": 2}


def test_version_conflict_gets_the_document_and_resends_once():
    link, sh = make()
    with logged() as lines:
        assert sh.report({"t": 21}) == 1
        sh.handle(GET, error_reply(409))
        assert link.published[-1] == (UPDATE, '{"method":"get"}', 1)
        sh.handle(GET, get_reply(12, {"t": 20}))
        assert sent(link)[-1] == {"method": "update", "state": {"reported": {"t": 21}}, "version": 13}
        n = len(link.published)
        sh.handle(GET, error_reply("409"))  # refused again: not resent a second time
        sh.handle(GET, get_reply(14, {"t": 20}))
    assert len(link.published) == n
    assert sh.counters["errors"] == 2
    assert any("errorcode 409 (version conflict)" in line for line in lines)


def test_other_errors_are_logged_not_retried():
    link, sh = make()
    sh.report({"t": 1})
    with logged() as lines:
        sh.handle(GET, error_reply(408, "too many attributes"))
    assert len(link.published) == 1
    assert any("errorcode 408 (too many attributes)" in line for line in lines)


def test_bad_messages_from_the_cloud_never_raise():
    link, sh = make()
    called = []
    sh.on_desired = lambda d: called.append(d)
    bad = [b'{"method":"control",', b"\xff\xfe", b"[1,2]", b'"x"', b"{}", b'{"method":"control"}',
           b'{"method":"control","payload":[]}', b'{"method":"nope","payload":{}}',
           b({"method": "control", "payload": {"status": "success", "state": {"desired": {"a": 1}}}}),  # no version
           b({"method": "control", "payload": {"status": "success", "state": {"desired": {"a": 1}}}, "version": "9"}),
           b({"method": "control", "payload": {"status": "success", "state": {"desired": {"a": 1}}}, "version": True}),
           b({"method": "control", "payload": {"status": "success", "state": "x"}, "version": 9}),
           b({"method": "reply", "payload": {"status": "what"}}),
           b({"method": "reply", "payload": {"status": "error", "content": "x"}}),
           b({"method": "reply", "payload": {"status": "error"}})]
    with logged() as lines:
        for p in bad:
            assert sh.handle(GET, p) is True
    assert called == [] and link.published == [] and sh.version == 0
    assert sh.counters["errors"] == len(bad)
    assert any("bad JSON on %s" % GET in line for line in lines)


def test_an_oversized_document_is_ignored():
    link, sh = make()
    called = []
    sh.on_desired = lambda d: called.append(d)
    big = control(5, {"blob": "x" * 5000})
    with logged() as lines:
        assert sh.handle(GET, big) is True
    assert called == [] and sh.version == 0
    assert any("%d-byte message on %s is over 4100 bytes: ignored" % (len(big), GET) in line for line in lines)


def test_a_handler_that_raises_or_returns_a_bad_type_reports_nothing():
    link, sh = make()

    def boom(d):
        raise RuntimeError("valve stuck")

    sh.on_desired = boom
    with logged() as lines:
        sh.handle(GET, control(2, {"valve": 1}))
    assert link.published == [] and sh.desired == {"valve": 1} and sh.version == 2
    assert any("on_desired failed for version 2" in line and "valve stuck" in line for line in lines)
    sh.on_desired = lambda d: [1]
    with logged() as lines:
        sh.handle(GET, control(3, {"valve": 1}))
    assert link.published == []
    assert any("returned a list, not a dict or None" in line for line in lines)


def test_no_handler_keeps_the_desired_state():
    link, sh = make()
    with logged() as lines:
        sh.handle(GET, control(2, {"valve": 1}))
    assert sh.desired == {"valve": 1} and link.published == []
    assert any("no handler (shadow.on_desired)" in line for line in lines)


def test_report_refuses_at_the_door():
    link, sh = make()
    assert "a dict" in str(raises(TypeError, sh.report, [1]))
    assert "129 attributes" in str(raises(ValueError, sh.report, {"k%d" % i: i for i in range(129)}))
    assert "attribute names are text" in str(raises(TypeError, sh.report, {1: 2}))
    assert "not JSON" in str(raises(ValueError, sh.report, {"f": object()}))
    assert "4100" in str(raises(ValueError, sh.report, {"blob": "x" * 5000}))
    raises(TypeError, sh.delete, "color")
    assert link.published == []
    assert sh.report({"ok": 1}) == 1  # nothing refused took a version


def test_outbox_refusal_returns_none_and_takes_no_version():
    link, sh = make()
    link.accept = False
    with logged():
        assert sh.report({"a": 1}) is None
    link.accept = True
    assert sh.report({"a": 1}) == 1


def test_a_newer_update_supersedes_the_refused_one():
    link, sh = make()
    with logged():
        sh.report({"t": 21})
        sh.handle(GET, error_reply(409))
        assert sh.report({"t": 22}) == 2  # the app reported again meanwhile
        n = len(link.published)
        sh.handle(GET, get_reply(12, {"t": 20}))
    assert len(link.published) == n  # the refused {"t": 21} is not sent over the newer state


def test_the_device_loads_shadow_and_rrpc_only_when_used():
    import sys

    from fwtest import StubUART

    from firmware import app
    from firmware.device import Device

    for m in ("firmware.shadow", "firmware.rrpc"):
        sys.modules.pop(m, None)
    c = app.load_config("config.example.json")
    c["uart"] = {"url": "socket://127.0.0.1:1"}
    dev = Device(dict(c), uart=StubUART())
    assert "firmware.shadow" not in sys.modules and "firmware.rrpc" not in sys.modules
    assert dev.on_rrpc is None and "firmware.rrpc" not in sys.modules
    subs = dev.link.subscriptions
    dev.on_rrpc = lambda p: b"x"
    assert "firmware.rrpc" in sys.modules and ("/sys/%s/%s/rrpc/request/+" % (c["product_key"], c["device_name"]), 0) in subs
    assert dev.shadow is dev.shadow and "firmware.shadow" in sys.modules
    assert ("/shadow/get/%s/%s" % (c["product_key"], c["device_name"]), 1) in subs
    # the downlinks reach them through the device's dispatch
    with logged():
        dev._on_message("/sys/%s/%s/rrpc/request/77" % (c["product_key"], c["device_name"]), b"q")
        dev._on_message("/shadow/get/%s/%s" % (c["product_key"], c["device_name"]), control(3, {"a": 1}))
    assert dev._rrpc.counters["requests"] == 1 and dev.shadow.version == 3 and dev.shadow.desired == {"a": 1}


def test_first_used_while_up_the_device_reads_the_document_at_once():
    from fwtest import StubUART

    from firmware import app
    from firmware.device import Device
    from firmware.link import UP

    c = app.load_config("config.example.json")
    c["uart"] = {"url": "socket://127.0.0.1:1"}
    dev = Device(dict(c), uart=StubUART())
    dev.link.state = UP  # as if connected
    got = []
    dev.link.publish = lambda topic, payload, qos=0: got.append((topic, payload, qos)) or True
    dev.link.subscribe = lambda topic, qos=0: None
    sh = dev.shadow
    assert got == [("/shadow/update/%s/%s" % (c["product_key"], c["device_name"]), '{"method":"get"}', 1)]
    assert dev.shadow is sh and len(got) == 1  # only on first use
