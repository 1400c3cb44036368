# The library's API (firmware/device.py) on its own: relative topics, subscription handlers
# with MQTT wildcards, the fallback handler, what publish() queues. Runs under CPython and
# MicroPython; the examples run end to end in test_examples.py.
from fwtest import StubUART, raises

from firmware.aliyun import Topics, matches
from firmware.config import check
from firmware.device import Device

PK, DN = "a1DemoPk001", "demo-device-1"


def device(**kw):
    cfg = check(dict({"product_key": PK, "device_name": DN, "device_secret": "s" * 32, "ntp": False}, **kw))
    return Device(cfg, uart=StubUART([]))


def test_relative_topics_are_the_devices_own():
    t = Topics(PK, DN)
    assert t.expand("user/update") == "/%s/%s/user/update" % (PK, DN)
    assert t.expand("/sys/x/y") == "/sys/x/y" and t.expand(5) == 5  # others are the driver's to check


def test_mqtt_wildcards():
    assert matches("/a/+/c", "/a/b/c") and not matches("/a/+/c", "/a/b/d")
    assert matches("/a/#", "/a/b/c/d") and matches("/a/b", "/a/b") and not matches("/a/b", "/a/b/c")
    assert not matches("/a/+", "/a/b/c")


def test_handlers_get_their_topics_and_on_message_the_rest():
    dev = device()
    got = []
    dev.subscribe("user/cmd", lambda t, p: got.append(("cmd", t, p)))
    dev.subscribe("user/cfg/#", lambda t, p: got.append(("cfg", t, p)), qos=1)
    dev.on_message = lambda t, p: got.append(("other", t, p))
    base = "/%s/%s/" % (PK, DN)
    for t in ("user/cmd", "user/cfg/a/b", "user/get"):
        dev.link._on_message(base + t, b"x")
    assert got == [("cmd", base + "user/cmd", b"x"), ("cfg", base + "user/cfg/a/b", b"x"), ("other", base + "user/get", b"x")]
    assert (base + "user/cfg/#", 1) in dev.link.subscriptions  # made again after every reconnect


def test_publish_queues_qos1_under_the_expanded_topic_and_checks_at_the_door():
    dev = device()
    assert dev.publish("user/update", '{"t": 1}') is True
    assert dev.link.outbox.peek() == ("/%s/%s/user/update" % (PK, DN), '{"t": 1}')
    raises(TypeError, dev.publish, "user/update", {"t": 1})
    raises(ValueError, dev.publish, "user/#", "x")
    assert len(dev.link.outbox) == 1 and dev.time() is None and not dev.up
