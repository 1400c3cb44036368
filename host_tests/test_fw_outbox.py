# The QoS 1 outbox: bounded, FIFO, the head leaves only through pop() (after its PUBACK),
# and both full policies count and log every drop. Runs under CPython and MicroPython.
from fwtest import LogCapture, raises

from firmware import log
from firmware.outbox import Outbox


def _capture():
    cap = LogCapture()
    log.sink = cap.write
    return cap


def test_fifo_and_peek_does_not_remove():
    ob = Outbox(5)
    for i in range(3):
        assert ob.put("t", "m%d" % i)
    assert len(ob) == 3
    assert ob.peek() == ("t", "m0")
    assert ob.peek() == ("t", "m0")  # peeking (sending) never removes: only pop() does
    assert len(ob) == 3
    assert [ob.pop()[1] for _ in range(3)] == ["m0", "m1", "m2"]
    assert ob.peek() is None and len(ob) == 0


def test_drop_oldest_counts_and_logs_every_drop():
    cap = _capture()
    try:
        ob = Outbox(3, "drop_oldest")
        for i in range(5):
            assert ob.put("t/%d" % i, "m%d" % i)  # accepted: the oldest makes room
        assert ob.dropped == 2
        assert [ob.pop()[1] for _ in range(3)] == ["m2", "m3", "m4"]
        drops = [line for line in cap.lines if "dropped the oldest" in line]
        assert len(drops) == 2
        assert "t/0" in drops[0] and "(1 dropped so far)" in drops[0]
        assert "t/1" in drops[1] and "(2 dropped so far)" in drops[1]
    finally:
        log.sink = None


def test_refuse_new_keeps_the_queue_and_counts():
    cap = _capture()
    try:
        ob = Outbox(2, "refuse_new")
        assert ob.put("t", "a") and ob.put("t", "b")
        assert not ob.put("t", "c")
        assert not ob.put("t", "d")
        assert ob.dropped == 2
        assert [ob.pop()[1] for _ in range(2)] == ["a", "b"]
        assert sum(1 for line in cap.lines if "refused a message" in line) == 2
        assert ob.put("t", "e")  # room again
    finally:
        log.sink = None


def test_bad_policy_is_refused():
    e = raises(ValueError, Outbox, 3, "drop_newest")
    assert "drop_newest" in str(e)


def test_bounded_under_a_long_outage():
    ob = Outbox(50, "drop_oldest")
    log.sink = lambda line: None
    try:
        for i in range(1000):
            ob.put("t", str(i))
    finally:
        log.sink = None
    assert len(ob) == 50 and ob.dropped == 950
    assert ob.peek()[1] == "950"
