# RRPC (firmware/rrpc.py): a request on /sys/{pk}/{dn}/rrpc/request/{messageId} answered
# on .../rrpc/response/{messageId} with QoS 0, byte for byte; what a handler may return, a
# handler that raises or returns a bad type (answered with code 400 at once, not left to
# the platform's 8 s timeout), an unusable messageId; and the answer through the real link
# (firmware/link.py): sent from the receive path at once, or, when the handler ran inside
# another command's wait, by the next step. Runs under CPython and MicroPython.
import json

from fwtest import PublishLink, logged
from test_fw_link import make, up

from firmware.aliyun import Topics
from firmware.rrpc import DEADLINE_MS, Rrpc

PK, DN = "a1DemoPk001", "demo-device-1"
T = Topics(PK, DN)
REQ = "/sys/a1DemoPk001/demo-device-1/rrpc/request/"
RESP = "/sys/a1DemoPk001/demo-device-1/rrpc/response/"
MID = "1234567890123456789"


def make_rpc(handler):
    link = PublishLink()
    return link, Rrpc(link, T, handler)


def test_topics_and_subscription():
    assert T.rrpc_request == REQ and T.rrpc_response == RESP
    link, _ = make_rpc(None)
    assert link.subscriptions == [(REQ + "+", 0)]


def test_answers_on_the_response_topic_with_the_same_id_qos0():
    got = []
    link, rpc = make_rpc(lambda p: got.append(p) or b"\x00pong\xff")
    assert rpc.handle(REQ + MID, b'{"ping":1}') is True
    assert got == [b'{"ping":1}']
    assert link.published == [(RESP + MID, b"\x00pong\xff", 0)]
    assert rpc.counters == {"requests": 1, "answered": 1, "errors": 0, "unanswered": 0}


def test_str_and_dict_answers():
    link, rpc = make_rpc(lambda p: "温度 21")
    rpc.handle(REQ + "1", b"")
    assert link.published[-1] == (RESP + "1", "温度 21", 0)
    link, rpc = make_rpc(lambda p: {"ok": True, "n": [1, 2]})
    rpc.handle(REQ + "2", b"x")
    t, p, q = link.published[-1]
    assert t == RESP + "2" and json.loads(p) == {"ok": True, "n": [1, 2]} and q == 0


def test_none_sends_no_answer():
    link, rpc = make_rpc(lambda p: None)
    assert rpc.handle(REQ + MID, b"x") is True
    assert link.published == [] and rpc.counters["unanswered"] == 1


def test_other_topics_are_not_taken():
    link, rpc = make_rpc(lambda p: b"x")
    assert rpc.handle("/sys/a1DemoPk001/demo-device-1/thing/service/property/set", b"{}") is False
    assert rpc.handle(RESP + MID, b"{}") is False
    assert link.published == []


def error_of(link):
    t, p, q = link.published[-1]
    return t, json.loads(p), q


def test_a_handler_that_raises_gets_code_400_at_once_and_is_logged():
    def boom(p):
        raise RuntimeError("sensor gone")

    with logged() as lines:
        link, rpc = make_rpc(boom)
        assert rpc.handle(REQ + MID, b"secret-ish request") is True
    assert error_of(link) == (RESP + MID, {"code": 400, "message": "handler failed"}, 0)
    assert rpc.counters["errors"] == 1 and rpc.counters["answered"] == 0
    text = "\n".join(lines)
    assert "handler failed" in text and "RuntimeError" in text and "sensor gone" in text
    assert "secret-ish" not in text  # the request's bytes are never logged


def test_bad_return_types_get_code_400():
    for bad, why in ((42, "int"), ([1], "list"), ((1, 2), "tuple"), (True, "bool")):
        with logged() as lines:
            link, rpc = make_rpc(lambda p, bad=bad: bad)
            rpc.handle(REQ + MID, b"x")
        assert error_of(link) == (RESP + MID, {"code": 400, "message": "bad answer"}, 0), bad
        assert any("the handler returned a %s, not bytes, str or dict" % why in line for line in lines)


def test_a_dict_that_is_not_json_and_an_answer_too_long_get_code_400():
    link, rpc = make_rpc(lambda p: {"f": object()})
    with logged():
        rpc.handle(REQ + "5", b"x")
    assert error_of(link)[1]["code"] == 400
    link, rpc = make_rpc(lambda p: "x" * 5000)
    with logged() as lines:
        rpc.handle(REQ + "6", b"x")
    assert error_of(link) == (RESP + "6", {"code": 400, "message": "answer not sent"}, 0)
    assert any("4100" in line for line in lines)


def test_unusable_message_ids_are_not_answered():
    link, rpc = make_rpc(lambda p: b"x")
    with logged() as lines:
        for mid in ("", "12/34", "abc", "1" * 33, "+"):
            assert rpc.handle(REQ + mid, b"x") is True
    assert link.published == [] and rpc.counters["unanswered"] == 5
    assert len([line for line in lines if "no usable messageId" in line]) == 5


def test_a_slow_handler_is_said_to_have_missed_the_deadline():
    now = [1000]
    link, rpc = make_rpc(None)
    rpc.ticks = lambda: now[0]

    def slow(p):
        now[0] += DEADLINE_MS + 500
        return b"late"

    rpc.handler = slow
    with logged() as lines:
        rpc.handle(REQ + MID, b"x")
    assert link.published == [(RESP + MID, b"late", 0)]
    assert any("took 8500 ms" in line and "gave up at 8000 ms" in line for line in lines)


def test_through_the_link_the_answer_goes_out_in_the_same_step():
    link, m, clock = make()
    up(link, clock)
    rpc = Rrpc(link, link.topics, lambda p: b"pong")
    link.on_message = rpc.handle
    assert (REQ + "+", 0) in link.subscriptions
    before = len(m.published)
    m.inbox.append((REQ + MID, b"ping"))
    with logged():
        link.step()
    assert m.published[before:] == [b"pong"]
    assert ("mqtt_publish", b"pong") in m.calls and link.counters["qos0_sent"] >= 1


def test_through_the_link_inside_another_commands_wait_the_next_step_sends_it():
    link, m, clock = make()
    up(link, clock)
    rpc = Rrpc(link, link.topics, lambda p: "pong")
    link.on_message = rpc.handle
    m.busy = lambda: True  # the request arrives while a command waits for its answer
    before = len(m.published)
    link._on_message(REQ + MID, b"ping")  # what the driver calls from inside that wait
    assert m.published[before:] == [] and link._later == [(RESP + MID, "pong")]
    m.busy = lambda: False
    with logged():
        link.step()  # the next step (5 ms later in the device's loop): sent first thing
    assert m.published[before:] == ["pong"] and link._later == []



def test_an_answer_the_link_refuses_is_logged_not_counted_as_answered():
    link, rpc = make_rpc(lambda p: b"pong")
    link.accept = False  # down, or too many QoS 0 messages already waiting for the module
    with logged() as lines:
        assert rpc.handle(REQ + MID, b"ping") is True
    assert rpc.counters["answered"] == 0 and link.published == [(RESP + MID, b"pong", 0)]
    assert any("answer not sent (the link is down or has too many waiting)" in line for line in lines)


def test_with_the_asyncio_front_the_next_step_sends_it():
    link, m, clock = make()
    up(link, clock)
    link.defer = True  # what Device.aio() sets: QoS 0 from handlers waits for the supervisor's step
    rpc = Rrpc(link, link.topics, lambda p: b"pong")
    link.on_message = rpc.handle
    before = len(m.published)
    m.inbox.append((REQ + MID, b"ping"))
    with logged():
        link.step()  # takes the request in (the answer waits in _later), then sends what waits
    assert m.published[before:] == [b"pong"] and link._later == []
