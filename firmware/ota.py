# Over-the-air updates, the download half (docs/ota.md): the platform's job on
# /ota/device/upgrade/{pk}/{dn} is checked, the package fetched through the module in
# bounded ranged GETs (firmware/http.py get_range) straight into ota/pkg on flash, its
# digest checked, and the marker for firmware/update.py written; then the board resets and
# boot.py applies it. Loaded by the Device only when a job comes or one is pending.
#
# Progress goes to /ota/device/progress/{pk}/{dn}: "step" 1..100 while downloading, or the
# platform's codes with a "desc": -1 upgrade failed (refused, rolled back), -2 download
# failed, -3 verify failed, -4 flash write failed (Aliyun's "OTA updates" topic page).
# The job survives a reboot (ota/job): the download resumes from the bytes already staged.
import json
import os

from firmware import __version__, log, update
from firmware.errors import ModemError
from firmware.port import const, ticks_add, ticks_diff, ticks_ms

_TAG = "ota"
JOB = "ota/job"
CHUNK = const(2048)  # bytes per ranged GET: one +HTTPREAD payload (the driver takes 4100)
_TRIES = const(5)  # failed chunks in a row (link up) before the download is given up
_RETRY_MS = const(3000)  # ... the wait after each, times the failures so far
_REBOOT_MS = const(15000)  # longest wait for the last progress report's PUBACK
_URL_MAX = const(500)  # AT+HTTPPARA "URL" (docs/at-dialect.md)
_SLACK = const(16384)  # free flash kept beside the package and its unpacked copy
METHODS = {"md5": 32, "sha256": 64}  # signMethod (any case) -> hex digits of its sign


def free_bytes():
    """Free flash of the root file system, or None where os.statvfs is missing."""
    try:
        s = os.statvfs(".")
        return s[0] * s[4]
    except (AttributeError, OSError):
        return None


def parse_job(msg, running, free, bad=None):
    """The job of an upgrade message: a dict (version, size, url, method, sign), or the
    (step, desc) of the refusal. running: the version that runs; free: free flash bytes
    (None: unknown); bad: a version rolled back before, refused again."""
    data = msg.get("data")
    if str(msg.get("code", "1000")) != "1000" or not isinstance(data, dict):
        return None, (-1, "not an upgrade job (code %s)" % msg.get("code"))
    v, size, url = data.get("version"), data.get("size"), data.get("url")
    if not isinstance(v, str) or not 0 < len(v) <= 64 or min(v) <= " " or max(v) > "~":
        return None, (-1, "version must be 1..64 printable characters")
    if v == running:
        return None, (-1, "version %s is already running" % v)
    if v == bad:
        return None, (-1, "version %s was rolled back on this device" % v)
    if type(size) is not int or size <= 0:
        return None, (-1, "size must be a positive whole number of bytes")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > _URL_MAX:
        return None, (-2, "url must be http(s):// and at most %d characters" % _URL_MAX)
    if '"' in url or "\\" in url or min(url) < " " or "\x7f" in url:
        return None, (-2, "url holds a quote, a backslash or a control character")
    method = data.get("signMethod") or ("md5" if data.get("md5") else "")
    method = method.lower() if isinstance(method, str) else ""
    sign = data.get("sign") or data.get("md5")
    if method not in METHODS:
        return None, (-3, "signMethod %s is not MD5 or SHA256" % data.get("signMethod"))
    if not isinstance(sign, str) or len(sign) != METHODS[method] or not _hex(sign):
        return None, (-3, "sign is not a %s digest in hex" % method)
    if free is not None and free < 2 * size + _SLACK:
        return None, (-4, "package of %d bytes does not fit: %d bytes of flash free" % (size, free))
    return {"version": v, "size": size, "url": url, "method": method, "sign": sign.lower()}, None


def _hex(s):
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def hasher(method):
    import hashlib

    if method == "sha256":
        return hashlib.sha256()
    md5 = getattr(hashlib, "md5", None)  # rp2 builds before v1.27 have none
    return md5() if md5 else _Md5()


class _Md5:
    """Streaming MD5 on firmware/digest.py's block function, for a hashlib without md5."""

    def __init__(self):
        self.state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
        self.buf = bytearray(64)
        self.have = 0
        self.n = 0

    def update(self, data):
        from firmware.digest import _md5_blocks

        self.n += len(data)
        i = 0
        if self.have:
            k = min(64 - self.have, len(data))
            self.buf[self.have:self.have + k] = data[:k]
            self.have += k
            i = k
            if self.have < 64:
                return
            _md5_blocks(self.buf, self.state)
            self.have = 0
        whole = (len(data) - i) & ~63
        if whole:
            _md5_blocks(data[i:i + whole], self.state)
        rest = len(data) - i - whole
        self.buf[0:rest] = data[i + whole:]
        self.have = rest

    def digest(self):
        """As hashlib's: the state stays as it was (more data may follow)."""
        from struct import pack

        saved = (list(self.state), bytearray(self.buf), self.have, self.n)
        pad = bytearray((55 - self.n) % 64 + 1)
        pad[0] = 0x80
        self.update(bytes(pad) + pack("<Q", self.n << 3))
        out = pack("<4I", *self.state)
        self.state, self.buf, self.have, self.n = saved
        return out


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


class Ota:
    """One update at a time. handle() takes the platform's jobs, poll() (each Device step)
    fetches one chunk while the link is up, verifies the whole, then resets the board."""

    def __init__(self, link, topics, cfg):
        self.link = link
        self.topics = topics
        self.tries = cfg.get("ota_boots", 3)
        self.trial_s = cfg.get("ota_trial_s", 600)
        self.job = update.read_json(JOB) or {}  # a download a reboot interrupted goes on
        self.state = "download" if self.job else "idle"  # idle, download, reboot
        self.fails = 0
        self._next = ticks_ms()
        self._step = 0  # the last percentage reported
        self._rid = 0

    # ------------------------------------------------------------------ reports
    def report(self, step, desc=None):
        self._rid += 1
        params = {"step": str(step), "desc": desc or ("downloading" if 0 < step < 100 else "")}
        msg = json.dumps({"id": "ota%d" % self._rid, "params": params})
        if step < 0:
            log.error(_TAG, "update refused/failed (%d): %s", step, desc)
        self.link.publish(self.topics.ota_progress, msg, 1)

    def report_result(self):
        """The outcome firmware/update.py left (a refused package, a rollback), once."""
        r = update.read_json(update.RESULT)
        if r is None:
            return
        self.report(r.get("step", -1), r.get("desc"))
        os.rename(update.RESULT, "ota/last")  # kept: a rolled back version is refused again

    # ------------------------------------------------------------------ the job
    def handle(self, topic, payload):
        """A downlink: True when it was the upgrade topic's (taken or refused)."""
        if topic != self.topics.ota_upgrade:
            return False
        from firmware.aliyun import parse

        msg = parse(topic, payload, _TAG)
        if msg is None:
            self.report(-1, "job is not a JSON object")
            return True
        last = update.read_json("ota/last") or {}
        bad = last.get("version") if last.get("step") == -1 else None
        job, why = parse_job(msg, __version__, free_bytes(), bad)
        if job is None:
            self.report(*(why or (-1, "refused")))
            return True
        if job == self.job:
            return True  # the same job again (a reconnect): the download goes on
        if self.state == "reboot":
            self.report(-1, "version %s is staged and applies at the reset" % self.job["version"])
            return True
        try:
            if not update.exists(update.STAGE):
                os.mkdir(update.STAGE)
            update.remove(update.PKG)
            update.write_json(JOB, job)
        except OSError as e:
            self.report(-4, "staging: %s" % log.err(e))
            return True
        log.info(_TAG, "job: version %s, %d bytes, %s", job["version"], job["size"], job["method"])
        self.job, self.state, self.fails, self._step = job, "download", 0, 0
        self._next = ticks_ms()
        return True

    def poll(self):
        """The update's turn (sync): one chunk of a download, or the reset to apply it."""
        return self.link.modem.at.run(self.poll_g())

    def poll_g(self):
        """poll() as a generator of the engine: the asyncio front awaits a chunk's commands."""
        if self.state == "reboot":
            if not len(self.link.outbox) or ticks_diff(ticks_ms(), self._next) >= 0:
                log.info(_TAG, "resetting to apply version %s", self.job["version"])
                update.reboot()
        elif self.state == "download" and self.link.up and ticks_diff(ticks_ms(), self._next) >= 0:
            yield from self._chunk_g()

    def _chunk_g(self):
        job = self.job
        size = job["size"]
        have = _size(update.PKG)
        if have >= size:
            return self._verify()
        end = have + CHUNK - 1 if size - have > CHUNK else (0 if have else size - 1)
        from firmware import http

        try:
            status, data = yield from http.get_range_g(self.link.modem, job["url"], have, end)
            if status not in (200, 206) or not data:
                raise ModemError("HTTP %d, %d bytes" % (status, len(data)), "cloud")
            if status == 200 and (have or len(data) != size) or have + len(data) > size:
                raise ModemError("the server ignored the range (HTTP %d, %d bytes)" % (status, len(data)), "cloud")
        except Exception as e:  # the module's failures, and the heap's: counted alike
            return self._failed(e)
        try:
            with open(update.PKG, "ab") as f:
                f.write(data)
        except OSError as e:
            return self._give_up(-4, "writing the package: %s" % log.err(e))
        self.fails = 0
        have += len(data)
        step = have * 100 // size
        if step >= self._step + 10 and step < 100:
            self._step = step
            self.report(step)
        if have >= size:
            self._verify()

    def _failed(self, e):
        self.fails += 1
        log.warn(_TAG, "chunk failed (%d of %d): %s", self.fails, _TRIES, e if isinstance(e, ModemError) else log.err(e))
        if self.fails >= _TRIES:
            return self._give_up(-2, "download: %s" % (e if isinstance(e, ModemError) else log.err(e)))
        self._next = ticks_add(ticks_ms(), _RETRY_MS * self.fails)

    def _give_up(self, step, desc):
        self.report(step, desc)
        update.remove(update.PKG)
        update.remove(JOB)
        self.job, self.state = {}, "idle"

    def _verify(self):
        job = self.job
        try:
            got = update.hash_file(update.PKG, hasher(job["method"]), bytearray(update.BUF))
        except OSError as e:
            return self._give_up(-4, "reading the package: %s" % log.err(e))
        if got != job["sign"]:
            return self._give_up(-3, "%s digest mismatch: the package is not the one the job names" % job["method"])
        try:
            with open(update.PKG, "rb") as f:
                version = update.manifest(f)[0]
        except (OSError, ValueError) as e:
            return self._give_up(-3, "package: %s" % log.err(e))
        if version != job["version"]:
            return self._give_up(-3, "package holds version %s, the job names %s" % (version, job["version"]))
        update.write_json(update.STATE, {"phase": "unpack", "version": version, "from": __version__,
                                         "tries": self.tries, "trial_s": self.trial_s})
        update.remove(JOB)
        self.report(100, "downloaded and verified: applying at the reset")
        self.state = "reboot"
        self._next = ticks_add(ticks_ms(), _REBOOT_MS)
