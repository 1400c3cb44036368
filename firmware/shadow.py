# The device shadow (docs/aliyun.md section 13): the platform keeps a JSON document per
# device, {"state": {"reported": {...}, "desired": {...}}, "version": n}, that servers read
# and change while the device is away.
#
#   sh = Shadow(link, topics)        # subscribes /shadow/get/{pk}/{dn}
#   sh.on_desired = fn               # fn(desired: dict) -> None (all applied) | dict (what was)
#   sh.report({"color": "red"})      # state.reported, with the next version -> that version
#   sh.get()                         # the whole document (also done after every connect)
#   sh.delete(["color"])             # reported attributes (None: all of them)
#   ...in link.on_message: sh.handle(topic, payload) -> True on /shadow/get/{pk}/{dn}
#
# Versions: every update the device sends carries a version above any it knows or sent
# (the shadow refuses others with errorcode 409). A document or a control whose version is
# not newer than the device's is ignored (a duplicate, or one overtaken); a get() answer of
# the same version only refreshes .reported / .desired. A desired state newer than the
# device's goes to on_desired; then the device reports what it applied and clears desired
# in one update ({"reported": ..., "desired": "null"}), as Aliyun's docs describe. A 409
# answer makes the device get() the document and send the refused update once more with
# the version learnt (unless a newer update went out meanwhile); it is not retried again. Updates go QoS 1 through the link's outbox
# (never blocking). Nothing the cloud sends can raise out of handle(); the log names the
# problem and a length, never the document's values (firmware/log.py's rule).
import json

from firmware import log
from firmware.air72x import MSUB_MAX
from firmware.aliyun import parse
from firmware.port import const

_TAG = "shadow"
ATTRS_MAX = const(128)  # the shadow refuses more reported attributes (errorcode 408)
CONFLICT = "409"  # errorcode: the version is not newer than the shadow's


def _version(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class Shadow:
    def __init__(self, link, topics, qos=1):
        self.link = link
        self.topics = topics
        self.qos = qos  # of updates, and of the /shadow/get subscription (as Aliyun's example)
        self.version = 0  # the newest shadow version this device knows (0: none yet)
        self.reported = {}  # the shadow's state.reported as last seen (and reported since)
        self.desired = None  # a desired state not applied yet (None: none)
        self.timestamp = None  # the platform's time (s) of the last document or control
        self.on_desired = None
        self.counters = {"controls": 0, "ignored": 0, "errors": 0}
        self._sent = 0  # the highest version this device sent
        self._last = None  # (method, state) of the last update, for one resend after a 409
        self._resend = None  # ... set while the get() of that resend is on its way
        link.subscribe(topics.shadow_get, qos)

    # ------------------------------------------------------------------ the app's side
    def report(self, state, clear_desired=False):
        """Report `state` (a dict, at most 128 attributes) as state.reported; clear_desired:
        also clear state.desired. Returns the version sent, None when the outbox refused it.
        TypeError / ValueError at once (not a dict of named attributes, too many of them, not
        JSON, over the module's 4100 bytes), with nothing queued."""
        if not isinstance(state, dict):
            raise TypeError("shadow state: a dict, not %s" % type(state).__name__)
        for k in state:
            if not isinstance(k, str):
                raise TypeError("shadow state: attribute names are text, not %s" % type(k).__name__)
        if len(state) > ATTRS_MAX:
            raise ValueError("shadow state: %d attributes, the shadow takes at most %d" % (len(state), ATTRS_MAX))
        return self._update("update", {"reported": state, "desired": "null"} if clear_desired else {"reported": state})

    def get(self):
        """Ask for the whole document (the answer updates .version, .reported, .desired and
        calls on_desired for a newer desired state). True when queued."""
        return self.link.publish(self.topics.shadow_update, '{"method":"get"}', self.qos) is not False

    def delete(self, keys=None):
        """Delete the reported attributes `keys` (a list of names), or all of them (None)."""
        if keys is not None and (not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys)):
            raise TypeError("shadow delete: a list of attribute names, or None for all")
        return self._update("delete", {"reported": "null" if keys is None else {k: "null" for k in keys}})

    def handle(self, topic, payload):
        """A downlink: True when it was the shadow's (handled, or logged why not)."""
        if topic != self.topics.shadow_get:
            return False
        try:
            self._on_message(topic, payload)
        except Exception as e:  # a bug here must not take the app's loop down either
            self.counters["errors"] += 1
            log.error(_TAG, "message on %s not handled: %s", topic, log.err(e))
        return True

    # ------------------------------------------------------------------ internal
    def _update(self, method, state):
        v = max(self.version, self._sent) + 1
        text = None
        try:
            text = json.dumps({"method": method, "state": state, "version": v})  # CPython: TypeError
            json.loads(text)  # MicroPython writes what JSON cannot hold as <repr>: check
            ok = True
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError("shadow state: not JSON (keys must be text; values numbers, text, lists, dicts)")
        if self.link.publish(self.topics.shadow_update, text, self.qos) is False:  # ValueError: too long
            log.warn(_TAG, "%s version %d not sent: the link refused it", method, v)
            return None
        self._sent = v
        self._last = (method, state)
        self._resend = None  # a newer update went out: the refused one is not sent again
        return v

    def _on_message(self, topic, payload):
        if len(payload) > MSUB_MAX:
            self.counters["errors"] += 1
            log.error(_TAG, "%d-byte message on %s is over %d bytes: ignored", len(payload), topic, MSUB_MAX)
            return
        msg = parse(topic, payload, _TAG)
        if msg is None:
            self.counters["errors"] += 1
            return
        method, body, version = msg.get("method"), msg.get("payload"), msg.get("version")
        if not isinstance(body, dict) or method not in ("reply", "control"):
            self.counters["errors"] += 1
            log.error(_TAG, "message on %s (%d bytes) is no shadow reply or control: ignored", topic, len(payload))
            return
        if method == "control":
            return self._document(body, version, msg.get("timestamp"), True)
        status = body.get("status")
        if status == "error":
            return self._refused(body.get("content"))
        if status != "success":
            self.counters["errors"] += 1
            log.error(_TAG, "reply with status %s: ignored", log.safe(status, 16))
        elif "state" in body:  # the answer to get(): the whole document
            self._document(body, version, msg.get("timestamp"), False)
        elif _version(body.get("version")):  # an update accepted
            self.version = max(self.version, body["version"])
            log.info(_TAG, "update accepted: version %d", body["version"])

    def _refused(self, content):
        self.counters["errors"] += 1
        content = content if isinstance(content, dict) else {}
        code = content.get("errorcode")
        log.error(_TAG, "update refused: errorcode %s (%s)", log.safe(code, 8), log.safe(content.get("errormessage"), 60))
        if str(code) == CONFLICT and self._last is not None:
            self._resend, self._last = self._last, None  # once: get the version, send again
            self.get()

    def _document(self, body, version, timestamp, control):
        what = "control" if control else "document"
        state = body.get("state")
        if not _version(version) or not isinstance(state, dict):
            self.counters["errors"] += 1
            log.error(_TAG, "%s without a version or a state object: ignored", what)
            return
        newer = version > self.version
        if not newer and (control or version < self.version):
            self.counters["ignored"] += 1
            log.info(_TAG, "%s version %d is not newer than %d: ignored", what, version, self.version)
            return
        self.version = version
        self.timestamp = timestamp
        reported, desired = state.get("reported"), state.get("desired")
        self.reported = reported if isinstance(reported, dict) else {}
        desired = desired if isinstance(desired, dict) and desired else None
        if newer:
            self.desired = desired
        if newer and desired:
            self._apply(desired, version)  # its report supersedes a refused update (below)
        resend, self._resend = self._resend, None
        if resend is not None:
            log.info(_TAG, "sending the refused %s again after version %d", resend[0], self.version)
            self._update(*resend)
            self._last = None  # refused again: logged, not sent a third time

    def _apply(self, desired, version):
        self.counters["controls"] += 1
        if self.on_desired is None:
            log.warn(_TAG, "desired state of version %d: no handler (shadow.on_desired): kept", version)
            return
        try:
            out = self.on_desired(dict(desired))
        except Exception as e:
            log.error(_TAG, "on_desired failed for version %d: %s: not reported, desired kept", version, log.err(e))
            return
        out = desired if out is None else out
        if not isinstance(out, dict):
            log.error(_TAG, "on_desired returned a %s, not a dict or None: not reported", type(out).__name__)
            return
        try:
            self.report(out, clear_desired=True)
        except (TypeError, ValueError) as e:
            log.error(_TAG, "report after version %d: %s", version, log.err(e))
            return
        self.reported.update(out)
        self.desired = None
        log.info(_TAG, "desired state of version %d applied and reported", version)
