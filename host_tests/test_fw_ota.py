# The download half of an update (firmware/ota.py): the job parser and every refusal with
# the platform's code and a desc that says why, reported on the progress topic; the
# download in ranged chunks (firmware/http.get_range stood in for) straight to ota/pkg,
# resumed from the staged length, refused on a digest mismatch (-3, nothing staged for the
# apply) or after repeated failures (-2); the streaming MD5 for a hashlib without one.
# CPython and MicroPython.
import json
import os
import sys
from hashlib import sha256

from firmware import __version__, ota, port, update
from firmware.aliyun import Topics
from firmware.errors import ModemError
from firmware.port import hexlify, ticks_ms
from test_fw_update import Flash, package

PK, DN = "a1OtaPk0001", "ota-device-1"
T = Topics(PK, DN)
PKG = package([("firmware/__init__.mpy", b"M 2.0"), ("firmware/app.mpy", bytes(range(256)) * 20)])
SHA = hexlify(sha256(PKG).digest()).decode()
URL = "https://iotx-ota.oss-cn-shanghai.aliyuncs.com/ota/p.bin?Expires=1&Signature=x%3D"


def job(**kw):
    data = {"size": len(PKG), "version": "2.0", "url": URL, "sign": SHA, "signMethod": "SHA256",
            "md5": "0" * 32, "module": "default"}
    data.update(kw)
    return {"code": "1000", "data": data, "id": 1, "message": "success"}


class _Engine:
    """The engine's run(): the waits a chunk's commands yield, counted instead of slept."""

    def __init__(self):
        self.waits = 0

    def run(self, g):
        def wait(ms):
            self.waits += 1
        return port.run(g, wait)


class _Modem:
    def __init__(self):
        self.at = _Engine()


class Link:
    def __init__(self):
        self.up = True
        self.modem = _Modem()
        self.outbox = []
        self.sent = []

    def publish(self, topic, payload, qos=0):
        self.sent.append((topic, json.loads(payload), qos))
        return True

    def reports(self):
        assert all(t == T.ota_progress and q == 1 for t, _, q in self.sent)
        return [(int(p["params"]["step"]), p["params"]["desc"]) for _, p, _ in self.sent]


def test_job_accepted():
    j, why = ota.parse_job(job(), "1.0", 10 ** 6)
    assert why is None
    assert j == {"version": "2.0", "size": len(PKG), "url": URL, "method": "sha256", "sign": SHA}
    md5 = "93230c3bde425a9d7984a594ac55ea1e"
    j, why = ota.parse_job(job(signMethod="Md5", sign=md5.upper()), "1.0", None)  # the docs spell it both ways
    assert why is None and j["method"] == "md5" and j["sign"] == md5
    j, why = ota.parse_job(job(signMethod=None, sign=None, md5=md5), "1.0", None)  # md5 alone: the older form
    assert why is None and j["method"] == "md5" and j["sign"] == md5


def test_jobs_that_cannot_be_right_refused():
    cases = (
        (job(version="1.0"), -1, "version 1.0 is already running"),
        (job(version="2.0"), -1, "version 2.0 was rolled back on this device"),
        (job(version=""), -1, "version must be"),
        (job(version="a b"), -1, "version must be"),
        (job(version=7), -1, "version must be"),
        (job(size=True), -1, "size must be"),
        (job(size="100"), -1, "size must be"),
        (job(size=0), -1, "size must be"),
        (job(size=400000), -4, "package of 400000 bytes does not fit: 500000 bytes of flash free"),
        (job(signMethod="SHA1"), -3, "signMethod SHA1 is not MD5 or SHA256"),
        (job(sign="xyz"), -3, "sign is not a sha256 digest in hex"),
        (job(sign="g" * 64), -3, "sign is not a sha256 digest in hex"),
        (job(url="ftp://x/p.bin"), -2, "url must be http(s)://"),
        (job(url="https://x/" + "a" * 500), -2, "at most 500"),
        (job(url='https://x/p".bin'), -2, "quote"),
        (job(url="https://x/p\r\nAT+RESET"), -2, "control character"),
        ({"code": "9201", "data": {}}, -1, "not an upgrade job (code 9201)"),
        ({"code": "1000", "data": [1]}, -1, "not an upgrade job"),
    )
    for msg, step, desc in cases:
        j, why = ota.parse_job(msg, "1.0", 500000, bad="2.0" if "rolled" in desc else None)
        assert j is None and why is not None, msg
        assert why[0] == step and desc in why[1], (msg, why)


def test_refusals_reported_on_the_progress_topic():
    fl = Flash()
    link = Link()
    try:
        o = ota.Ota(link, T, {"ota_boots": 2})
        assert o.handle(T.get, b"{}") is False  # not its topic
        assert o.handle(T.ota_upgrade, b"not json") is True
        assert o.handle(T.ota_upgrade, json.dumps(job(version=__version__))) is True
        assert o.handle(T.ota_upgrade, json.dumps(job(signMethod="CRC32"))) is True
        assert link.reports() == [(-1, "job is not a JSON object"), (-1, "version %s is already running" % __version__),
                                  (-3, "signMethod CRC32 is not MD5 or SHA256")]
        assert o.state == "idle" and not update.exists(ota.JOB)
    finally:
        fl.close()


def _patch(fake):
    """http.get_range_g replaced by a generator around `fake` (one wait for the module's
    answer, then fake's result) in the module firmware/ota.py will import now (the link's
    auth phase drops firmware.http after each use: a copy taken when this file was loaded
    may be a stale one); returns the restorer. Called before Flash(), which makes a flash
    folder the working directory (a relative MICROPYPATH would not find it then)."""
    from firmware import http

    real = http.get_range_g

    def get_range_g(modem, url, start, end):
        yield 1
        return fake(modem, url, start, end)
    http.get_range_g = get_range_g

    def restore():
        http.get_range_g = real
    return restore


def _serve(data, fail=()):
    """A stand-in for http.get_range over `data`; chunk numbers in `fail` raise as a lost link does."""
    calls = []

    def get_range(modem, url, start, end):
        calls.append((start, end))
        if len(calls) in fail:
            raise ModemError("GET failed in the module: 601 network error", "connect")
        stop = end + 1 if end >= start else len(data)
        return 206, data[start:stop]
    return get_range, calls


def _run(o, calls=None, most=100):
    for _ in range(most):
        o._next = ticks_ms()  # no retry wait in a test
        o.poll()
        if o.state != "download":
            return


def test_download_resume_verify_and_stage():
    fake, calls = _serve(PKG, fail=(2,))
    restore = _patch(fake)
    fl = Flash()
    link = Link()
    try:
        o = ota.Ota(link, T, {"ota_boots": 2})
        assert o.handle(T.ota_upgrade, json.dumps(job()))
        o.poll()  # chunk 1
        assert os.stat(update.PKG)[6] == ota.CHUNK and update.read_json(ota.JOB)["version"] == "2.0"
        o.poll()  # chunk 2: the link is lost
        assert o.fails == 1 and os.stat(update.PKG)[6] == ota.CHUNK
        # a reboot here: the job and the staged bytes survive; a new Ota goes on from them
        o = ota.Ota(link, T, {"ota_boots": 2})
        assert o.state == "download"
        link.up = False
        o.poll()
        assert len(calls) == 2  # nothing tried while the link is down
        link.up = True
        _run(o, calls)
        assert calls[2][0] == ota.CHUNK  # resumed where the staged bytes end, not from 0
        starts = [c[0] for c in calls[2:]]
        assert starts == list(range(ota.CHUNK, len(PKG), ota.CHUNK))
        assert calls[-1][1] == 0  # the tail: BREAKEND below BREAK, to the end of the file
        assert link.modem.at.waits == len(calls)  # each chunk's wait went through the engine's run()
        with open(update.PKG, "rb") as f:
            assert f.read() == PKG
        assert o.state == "reboot" and not update.exists(ota.JOB)
        st = update.read_json(update.STATE)
        assert st == {"phase": "unpack", "version": "2.0", "from": __version__, "tries": 2, "trial_s": 600}
        steps = [s for s, _ in link.reports()]
        assert steps[-1] == 100 and steps == sorted(steps) and all(0 < s <= 100 for s in steps)
        assert o.handle(T.ota_upgrade, json.dumps(job())) is True and len(link.reports()) == len(steps)  # same job: nothing new
    finally:
        restore()
        fl.close()


def _download(fake, check):
    """A job downloaded through `fake` (a stand-in for http.get_range) until it ends, on a
    scratch flash; check(o, link) runs on that flash."""
    restore = _patch(fake)
    fl = Flash()
    link = Link()
    try:
        o = ota.Ota(link, T, {})
        o.handle(T.ota_upgrade, json.dumps(job()))
        _run(o, None)
        check(o, link)
    finally:
        restore()
        fl.close()


def test_corrupted_download_refused_nothing_staged():
    bad = bytearray(PKG)
    bad[100] ^= 0xFF

    def check(o, link):
        assert link.reports()[-1] == (-3, "sha256 digest mismatch: the package is not the one the job names")
        assert o.state == "idle"
        for p in (update.PKG, update.STATE, ota.JOB):
            assert not update.exists(p), p
        assert update.boot() is None and read_old()  # nothing to apply, the old firmware stays
    _download(_serve(bytes(bad))[0], check)


def read_old():
    with open("firmware/app.py", "rb") as f:
        return f.read() == b"# app 1.0\n"


def test_download_given_up_after_repeated_failures():
    fake, calls = _serve(PKG, fail=range(1, 100))

    def check(o, link):
        assert len(calls) == 5 and o.state == "idle"
        step, desc = link.reports()[-1]
        assert step == -2 and "601 network error" in desc
        assert not update.exists(update.PKG) and not update.exists(ota.JOB)
    _download(fake, check)


def test_server_ignoring_the_range_is_a_failed_chunk():
    def whole(modem, url, start, end):  # the first chunk as asked, then the whole file
        return (206, PKG[:end + 1]) if start == 0 else (200, PKG)

    def check(o, link):
        assert link.reports()[-1][0] == -2 and "ignored the range (HTTP 200, %d bytes)" % len(PKG) in link.reports()[-1][1]
        assert not update.exists(update.PKG)
    _download(whole, check)


def test_streaming_md5():
    vectors = ((b"", "d41d8cd98f00b204e9800998ecf8427e"),
               (b"The quick brown fox jumps over the lazy dog", "9e107d9d372bb6826bd81d3542a419d6"))
    for data, want in vectors:
        h = ota._Md5()
        h.update(data)
        assert hexlify(h.digest()).decode() == want
    data = bytes(range(256)) * 5
    ref = ota._Md5()
    ref.update(data)
    for split in (1, 7, 63, 64, 65, 200):
        h = ota._Md5()
        for i in range(0, len(data), split):
            h.update(memoryview(data)[i:i + split])
        assert h.digest() == ref.digest(), split
    h = ota._Md5()
    h.update(data[:100])
    h.digest()  # as hashlib's: more may follow
    h.update(data[100:])
    assert h.digest() == ref.digest()


def test_device_hooks_subscribe_dispatch_trial():
    from fwtest import StubUART, raises

    from firmware.config import check
    from firmware.device import Device

    base = {"product_key": PK, "device_name": DN, "device_secret": "s" * 32, "ntp": False}
    cfg = check(dict(base, ota_trial_s=30))  # before Flash(): the bundled CA is found from here
    got = []
    dev2 = Device(check(dict(base, ota=False)), uart=StubUART([]))  # also imports what a Device needs
    dev2.on_message = lambda t, p: got.append(t)
    fl = Flash()
    try:
        fl.stage()
        assert update.boot() == "trial"  # a new firmware on trial
        dev = Device(cfg, uart=StubUART([]))
        assert (T.ota_upgrade, 0) in dev.link.subscriptions and dev.ota is None and dev._trial
        sys.modules["firmware.update"] = update  # the Device dropped it; found again from here
        dev.uptime_s = lambda: 31  # not connected within ota_trial_s: the board resets
        assert raises(SystemExit, dev.timers).args[0] == update.REBOOT_EXIT
        dev.uptime_s = lambda: 29
        dev.timers()  # not yet
        queued = dev.stats()["queued"]
        dev._on_up()  # connected: the new firmware stays
        assert not update.exists(update.STATE) and not dev._trial
        dev._on_message(T.ota_upgrade, json.dumps(job(version=__version__)).encode())
        assert dev.ota is not None and dev.ota.state == "idle"  # loaded by the job, which it refused
        assert dev.stats()["queued"] == queued + 2  # the version inform, the refusal's report
        assert all(t != T.ota_upgrade for t, _ in dev2.link.subscriptions)
        dev2._on_message(T.ota_upgrade, b"{}")
        assert got == [T.ota_upgrade] and dev2.ota is None  # "ota": false: an ordinary downlink
    finally:
        fl.close()
