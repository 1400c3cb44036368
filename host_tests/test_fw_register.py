# Dynamic registration and the secret's storage (firmware/register.py) with a stub modem
# and real files: the signed form, the atomic write (a failure mid-write leaves the old
# file), config merging, the 6289 explanation, retries, and no secret in any log line.
# Runs under CPython and MicroPython.
import json
import os

import fwtest
from fwtest import LogCapture, raises, rmtree

from firmware import auth, config, log, register
from firmware.errors import CloudError

PK, DN, PS = "a1DynRegPk1", "dyn-device-7", "DynRegProductSecret00000000000001"
DS = "RegisteredSecret0000000000000042"


def tmpdir():
    return fwtest.tmpdir("register")


def read(path):
    with open(path) as f:
        return f.read()


class StubModem:
    def __init__(self, replies, version="AirM2M_Air724UG_V409_LTE_AT"):
        self.replies = list(replies)  # (status, body bytes) or an exception to raise
        self.posts = []
        self.calls = []
        self.version = version
        self.ca_loaded = None

    def family(self):
        from firmware.air72x import family

        return family(self.version)

    def load_ca(self, name, pem):
        self.calls.append("load_ca")
        self.ca_loaded = name
        return True

    def start(self):
        self.calls.append("start")

    def bearer_open(self, apn):
        self.calls.append("bearer_open")

    def sleep(self, ms):
        self.calls.append("sleep")

    def http_post(self, url, body):
        self.posts.append((url, body))
        r = self.replies.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def ok_reply(ds=DS):
    return 200, json.dumps({"code": 200, "data": {"productKey": PK, "deviceName": DN, "deviceSecret": ds},
                            "message": "success"}).encode()


def cfg_for(d, **kw):
    c = {"product_key": PK, "device_name": DN, "product_secret": PS, "backoff_min_ms": 10,
         "backoff_max_ms": 20, "backoff_refused_ms": 30}
    c.update(kw)
    c = config.check(c)
    c["secret_file"] = register.path_for(d + "/config.json")
    return c


def test_path_next_to_config():
    assert register.path_for("config.json") == "secret.json"
    assert register.path_for("/flash/config.json") == "/flash/secret.json"
    assert register.path_for("/tmp/x/config.json") == "/tmp/x/secret.json"


def test_save_and_load_round_trip():
    d = tmpdir()
    try:
        p = d + "/secret.json"
        assert register.load(p, PK, DN) is None
        register.save(p, PK, DN, DS)
        assert register.load(p, PK, DN) == DS
        assert json.loads(read(p)) == {"product_key": PK, "device_name": DN, "device_secret": DS}
        assert "secret.json.tmp" not in os.listdir(d)
        assert register.load(p, PK, "other") is None  # another device's secret is not used
    finally:
        rmtree(d)


class FailingFile:
    """A file whose write stops half-way (power loss, full flash)."""

    def __init__(self, path, mode):
        self.f = open(path, mode)

    def write(self, text):
        self.f.write(text[: len(text) // 2])
        raise OSError(28)  # ENOSPC

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def test_failure_mid_write_leaves_the_old_file():
    d = tmpdir()
    try:
        p = d + "/secret.json"
        register.save(p, PK, DN, DS)
        before = read(p)
        raises(OSError, register.save, p, PK, DN, "NewSecret", FailingFile)
        assert read(p) == before and register.load(p, PK, DN) == DS
        assert os.listdir(d) == ["secret.json"]  # the half-written temp file is gone
    finally:
        rmtree(d)


def test_short_write_is_a_failure():
    class Short:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, text):
            self.f.write(text[:5])
            return 5

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    d = tmpdir()
    try:
        p = d + "/secret.json"
        raises(OSError, register.save, p, PK, DN, DS, Short)
        assert os.listdir(d) == []
    finally:
        rmtree(d)


def test_corrupt_secret_file_is_ignored_and_logged():
    d = tmpdir()
    cap = LogCapture()
    log.sink = cap.write
    try:
        p = d + "/secret.json"
        with open(p, "w") as f:
            f.write('{"product_key": "a1Dyn')
        assert register.load(p, PK, DN) is None
        assert "not valid JSON" in cap.text()
    finally:
        log.sink = None
        rmtree(d)


def test_config_load_merges_the_stored_secret():
    d = tmpdir()
    try:
        with open(d + "/config.json", "w") as f:
            f.write(json.dumps({"product_key": PK, "device_name": DN, "product_secret": PS}))
        cfg = config.load(d + "/config.json")
        assert cfg.get("device_secret") is None and cfg["secret_file"] == d + "/secret.json"
        register.save(d + "/secret.json", PK, DN, DS)
        cfg = config.load(d + "/config.json")
        assert cfg["device_secret"] == DS
        assert "****" in json.dumps(config.masked(cfg)) and DS not in json.dumps(config.masked(cfg))
        with open(d + "/config.json", "w") as f:  # a secret in config.json wins
            f.write(json.dumps({"product_key": PK, "device_name": DN, "device_secret": "FromConfig"}))
        assert config.load(d + "/config.json")["device_secret"] == "FromConfig"
    finally:
        rmtree(d)


def test_register_posts_the_signed_form_and_stores_the_secret():
    d = tmpdir()
    cap = LogCapture()
    log.sink = cap.write
    try:
        cfg = cfg_for(d)
        m = StubModem([ok_reply()])
        assert register.register(m, cfg, rnd="a1b2c3") == DS
        url, body = m.posts[0]
        assert url == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"
        assert body == auth.register_form(PK, DN, PS, "a1b2c3", "hmacsha256")
        assert "signMethod=hmacsha256" in body
        assert cfg["device_secret"] == DS
        assert register.load(d + "/secret.json", PK, DN) == DS
        assert DS not in cap.text() and PS not in cap.text()
        assert "registered: DeviceSecret stored in" in cap.text()
    finally:
        log.sink = None
        rmtree(d)


def test_already_active_is_explained():
    d = tmpdir()
    cap = LogCapture()
    log.sink = cap.write
    try:
        cfg = cfg_for(d)
        m = StubModem([(200, b'{"code":6289,"data":{},"message":"device is already active"}')])
        e = raises(CloudError, register.register, m, cfg)
        assert e.code == 6289
        text = cap.text()
        assert "already active" in text and "only once" in text
        assert "Copy the DeviceSecret from the IoT console" in text and "reset the device in the console" in text
        assert "secret.json" not in os.listdir(d) and cfg.get("device_secret") is None
    finally:
        log.sink = None
        rmtree(d)


def test_reply_without_secret_is_an_error():
    d = tmpdir()
    try:
        m = StubModem([(200, b'{"code":200,"data":{}}')])
        raises(CloudError, register.register, m, cfg_for(d))
    finally:
        rmtree(d)


def test_provision_retries_then_registers():
    d = tmpdir()
    log.sink = LogCapture().write
    try:
        cfg = cfg_for(d)
        m = StubModem([OSError("no bearer"), (200, b"<html>busy</html>"), ok_reply()])
        assert register.provision(m, cfg) is True
        assert cfg["device_secret"] == DS
        assert m.calls.count("start") == 3 and m.calls.count("bearer_open") == 3
        # a stored secret: no registration at all
        m2 = StubModem([])
        assert register.provision(m2, cfg) is True and m2.calls == []
    finally:
        log.sink = None
        rmtree(d)


def test_provision_puts_the_ca_on_a_module_that_verifies_before_it_posts():
    d = tmpdir()
    log.sink = LogCapture().write
    try:
        cfg = cfg_for(d)
        m = StubModem([ok_reply()], version="AirM2M_780E_V1161_LTE_AT")
        assert register.provision(m, cfg) is True
        assert m.calls == ["start", "load_ca", "bearer_open"] and len(m.posts) == 1
        d2 = tmpdir()
        m = StubModem([ok_reply()])  # an Air724: cannot verify, said, and goes on
        assert register.provision(m, cfg_for(d2)) is True and "load_ca" not in m.calls
        rmtree(d2)
    finally:
        log.sink = None
        rmtree(d)


def test_provision_refused_waits_and_until_ends_it():
    d = tmpdir()
    log.sink = LogCapture().write
    try:
        cfg = cfg_for(d)
        refused = (200, b'{"code":6289,"message":"device is already active"}')
        m = StubModem([refused, refused])
        n = [0]

        def until():
            n[0] += 1
            return len(m.posts) >= 2

        assert register.provision(m, cfg, until) is False
        assert len(m.posts) == 2 and "device_secret" not in cfg or cfg["device_secret"] is None
    finally:
        log.sink = None
        rmtree(d)
