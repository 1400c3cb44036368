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
