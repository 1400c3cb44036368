# The app's RAM habits: what a device does not use is not built, and the config checker is
# dropped once config.json has been read. Both interpreters.
import sys

from fwtest import StubUART, capture_log, release_log

from firmware import app


def cfg(**kw):
    c = app.load_config("config.example.json")
    c["uart"] = {"url": "socket://127.0.0.1:1"}
    c.update(kw)
    return c


def test_load_config_drops_the_checker():
    c = app.load_config("config.example.json")
    assert c["product_key"] == "a1mxL3s6Z7m" and c["keepalive"] == 300
    assert "firmware.config" not in sys.modules
    import firmware

    assert not hasattr(firmware, "config")


def test_a_bad_config_is_one_log_line_not_an_exception():
    cap = capture_log()
    try:
        assert app.load_config("no-such-config.json") is None
        assert "no-such-config.json: not found" in cap.text()
    finally:
        release_log()
    assert "firmware.config" not in sys.modules


def test_thing_model_only_when_asked_for_and_ntp_can_be_off():
    a = app.App(cfg(), uart=StubUART())
    assert a.thing is None and a.ntp is not None
    a = app.App(cfg(thing=True, ntp=False), uart=StubUART())
    assert a.thing is not None and a.ntp is None
    topics = [t for t, q in a.link.subscriptions]
    assert a.topics.property_set in topics and a.topics.ntp_response not in topics


def test_telemetry_is_json_with_a_sequence():
    import json

    a = app.App(cfg(ntp=False), uart=StubUART())
    first, second = json.loads(a.telemetry()), json.loads(a.telemetry())
    assert first["seq"] == 1 and second["seq"] == 2
    assert "ts" not in first and first["uptime_s"] >= 0  # no NTP: no timestamp


class Calls:
    """An until() for start()/run(): counts its calls, True from call `stop_at` on; `then`
    runs at call `at` (to start a listener between two attempts)."""

    def __init__(self, stop_at, at=None, then=None):
        self.n, self.stop_at, self.at, self.then = 0, stop_at, at, then

    def __call__(self):
        self.n += 1
        if self.n == self.at:
            self.then()
        return self.n >= self.stop_at


def test_start_retries_a_url_where_nothing_listens_then_opens_it():
    from test_fw_uart import bound_port

    s, port = bound_port()
    cap = capture_log()
    conn = None
    try:
        c = cfg(backoff_min_ms=10, backoff_max_ms=20)
        c["uart"] = {"url": "socket://127.0.0.1:%d" % port}
        until = Calls(99, at=3, then=lambda: s.listen(1))
        a = app.start(c, until)
        assert until.n == 3 and a is not None and app.current is a  # three refusals, then it opened
        conn = s.accept()[0]
        a.uart.write(b"AT\r")
        assert conn.recv(8) == b"AT\r"
        errors = [line for line in cap.lines if " E app: uart.url: " in line]
        assert len(errors) == 3 and all("127.0.0.1:%d" % port in line for line in errors)
    finally:
        release_log()
        if conn is not None:
            conn.close()
        s.close()


def test_start_stops_when_until_says_so_and_at_once_on_a_fatal_uart():
    from test_fw_uart import bound_port

    s, port = bound_port()
    cap = capture_log()
    try:
        c = cfg(backoff_min_ms=10, backoff_max_ms=20)
        c["uart"] = {"url": "socket://127.0.0.1:%d" % port}
        until = Calls(2)
        assert app.start(c, until) is None and until.n == 2
        c["uart"] = {"id": 1, "tx": 17, "rx": 16}  # a board's pins, on a PC: cannot work, not retried
        until = Calls(99)
        assert app.start(c, until) is None and until.n == 0
        assert " E app: uart: " in cap.lines[-1]
    finally:
        release_log()
        s.close()


def test_run_never_raises_on_numbers_that_skipped_the_checker():
    for bad in ({"interval": float("nan")}, {"interval": float("inf")}, {"stats_interval": float("inf")}):
        a = app.App(cfg(ntp=False, **bad), uart=StubUART(strict=False))
        cap = capture_log()
        try:
            a.run(Calls(3))  # returns, raising nothing
        finally:
            release_log()
        assert any(" E app: " in line for line in cap.lines), bad


def test_main_is_none_when_the_config_cannot_work():
    capture_log()
    try:
        assert app.main("no-such-config.json") is None
    finally:
        release_log()


def test_a_downlink_is_logged_as_one_line_and_not_made_at_all_above_info():
    from firmware import log

    a = app.App(cfg(ntp=False), uart=StubUART())
    cap = capture_log()
    made = []
    real = app.printable
    app.printable = lambda p: made.append(p) or real(p)
    try:
        a.log_downlink("/t", b'{"a": 1}')
        a.log_downlink("/t", b"two\r\nlines")
        a.log_downlink("/t", b"\xff\x00")
        assert [ln.split(" app: ", 1)[1] for ln in cap.lines] == [
            'downlink /t {"a": 1}', "downlink /t 'two\\r\\nlines'", "downlink /t 0xff00"]
        log.level = log.WARN
        a.log_downlink("/t", b"x" * 1000)
        assert len(cap.lines) == 3 and len(made) == 3  # nothing formatted for a line not logged
    finally:
        log.level = log.INFO
        app.printable = real
        release_log()


def test_log_lines_of_one_second_share_its_stamp_and_a_new_second_gets_its_own():
    import time

    from firmware import log

    cap = capture_log()
    try:
        log.info("t", "one")
        log._last[0] -= 1  # as if the last stamp was made a second earlier
        log._last[1] = "stale"
        log.info("t", "two")
        log.info("t", "three")
    finally:
        release_log()
    stamps = [ln.split(" I t: ")[0] for ln in cap.lines]
    assert stamps[1] == stamps[2] != "stale" and len(stamps[1]) == 19
    t = time.localtime(log._last[0])
    assert stamps[2] == "%04d-%02d-%02d %02d:%02d:%02d" % (t[0], t[1], t[2], t[3], t[4], t[5])
