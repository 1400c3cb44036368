# The thing model (Alink JSON) over the link: property posts and events with their replies,
# property sets and service calls from the cloud with theirs.
#
#   thing = Thing(link, topics)
#   rid = thing.post_properties({"temp": 21.5}, callback)   # -> "7" (request id) or None
#   thing.post_event("alarm", {"level": 2}, callback)
#   thing.on_set(handler)                   # handler(params) -> code or None (= 200)
#   thing.on_service("reboot", handler)     # handler(params) -> (code, data) | data | None
#   ...in the app's loop: thing.poll()      # reports the posts whose reply did not come
#   ...in link.on_message: thing.handle(topic, payload) -> True when it was a thing topic
#   ...in link.on_up: thing.report_version(firmware.__version__)   # OTA version inform
#
# Non-blocking: a post only queues the message (QoS 1 through the link's outbox) and notes
# (deadline, callback) under its id. The platform's `_reply` (same id) or the deadline ends
# the request: callback(id, code, data) with the platform's code (200 = success), or
# TIMEOUT (-1) with data None. Without a callback the result is logged. Downlinks (property
# set, service calls) are answered on their `_reply` topic with the same id: 200, or the
# handler's code; a handler that raises gets ERROR (400, logged), bad parameters
# BAD_PARAMS (460). Nothing a downlink carries (bad JSON, wrong types) can raise out of
# handle(); what cannot be answered (no id) is logged. What the cloud sent is logged only
# through log.safe() (ids, codes, the platform's message) or by its length, an exception by
# log.err() (firmware/log.py's redaction rule).
import json

from firmware import log
from firmware.aliyun import parse, version_inform
from firmware.port import const, ticks_add, ticks_diff, ticks_ms

_TAG = "thing"
OK = const(200)
ERROR = const(400)  # Alink device code "request error": the handler failed
BAD_PARAMS = const(460)  # Alink device code "request parameter error"
TIMEOUT = const(-1)  # no _reply within the deadline (reported to callbacks only)
_PENDING_MAX = const(16)  # requests waiting for their reply; the oldest is given up beyond
_ID_WRAP = const(1000000000)  # ids "1".."999999999" (small ints on every board)


class Thing:
    def __init__(self, link, topics, timeout_ms=20000, qos=1):
        self.link = link
        self.topics = topics
        self.timeout_ms = timeout_ms
        self.qos = qos  # of posts (replies to the cloud always go QoS 0, as the SDKs do)
        self.ticks = ticks_ms  # injectable for tests
        self._id = 0
        self._pending = {}  # id -> (deadline, callback, method)
        self._due = None  # the earliest deadline in _pending (poll() is cheap until then)
        self._set = None
        self._services = {}  # identifier -> handler
        self._events = []  # event identifiers whose post_reply topic is subscribed
        link.subscribe(topics.property_post_reply, 0)
        link.subscribe(topics.property_set, 0)

    # ------------------------------------------------------------------ the app's side
    def next_id(self):
        """The next request id (a string, as Alink wants it)."""
        self._id = self._id % (_ID_WRAP - 1) + 1
        return str(self._id)

    def post_properties(self, params, callback=None):
        """Post properties (a dict); returns the request id, or None when the link refused
        the message (logged). callback(id, code, data) gets the reply or TIMEOUT."""
        return self._post(self.topics.property_post, "thing.event.property.post", params, callback)

    def post_event(self, identifier, params, callback=None):
        """Post the event `identifier` with its output params; like post_properties."""
        if identifier not in self._events:
            self._events.append(identifier)
            self.link.subscribe(self.topics.event_post_reply(identifier), 0)
        return self._post(self.topics.event_post(identifier), "thing.event.%s.post" % identifier, params, callback)

    def on_set(self, handler):
        """handler(params: dict) -> None or 200 (accepted) or an error code."""
        self._set = handler

    def on_service(self, identifier, handler):
        """handler(params: dict) -> (code, data) or data (dict, code 200) or None."""
        if identifier not in self._services:
            self.link.subscribe(self.topics.service(identifier), 0)
        self._services[identifier] = handler

    def report_version(self, version, qos=1):
        """The firmware version to /ota/device/inform/{pk}/{dn} (call it on every connect);
        returns the message id."""
        rid = self.next_id()
        self.link.publish(self.topics.ota_inform, version_inform(rid, version), qos)
        log.info(_TAG, "firmware version %s reported (id %s)", version, rid)
        return rid

    def pending(self):
        return len(self._pending)

    def poll(self):
        """Report the requests whose reply did not come in time. Call it from the loop."""
        if self._due is None or ticks_diff(self.ticks(), self._due) < 0:
            return
        now = self.ticks()
        for rid in [r for r, p in self._pending.items() if ticks_diff(now, p[0]) >= 0]:
            _, cb, method = self._pending.pop(rid)
            self._report(rid, TIMEOUT, None, cb, method, "no reply in %d ms" % self.timeout_ms)
        self._next_due()

    def handle(self, topic, payload):
        """A downlink: True when it belonged to the thing model (handled, answered, logged)."""
        t = self.topics
        try:
            if topic == t.property_set:
                self._on_set(topic, payload)
            elif topic.startswith(t.event_prefix) and topic.endswith("/post_reply"):
                self._on_reply(topic, payload)
            elif topic.startswith(t.service_prefix) and topic[len(t.service_prefix):] in self._services:
                self._on_service(topic, topic[len(t.service_prefix):], payload)
            else:
                return False
        except Exception as e:  # a bug here must not take the app's loop down either
            log.error(_TAG, "downlink on %s not handled: %s", topic, log.err(e))
        return True

    # ------------------------------------------------------------------ posts and replies
    def _post(self, topic, method, params, callback):
        rid = self.next_id()
        payload = json.dumps({"id": rid, "version": "1.0", "params": params, "method": method})
        if len(self._pending) >= _PENDING_MAX:  # give up the oldest (reported as a timeout)
            old = min(self._pending, key=lambda r: ticks_diff(self._pending[r][0], self.ticks()))
            _, cb, m = self._pending.pop(old)
            self._report(old, TIMEOUT, None, cb, m, "given up: %d requests pending" % _PENDING_MAX)
        if self.link.publish(topic, payload, self.qos) is False:
            log.warn(_TAG, "%s %s not sent: the link refused it", method, rid)
            return None
        self._pending[rid] = (ticks_add(self.ticks(), self.timeout_ms), callback, method)
        self._next_due()
        return rid

    def _next_due(self):
        due = None
        now = self.ticks()
        for p in self._pending.values():
            if due is None or ticks_diff(p[0], now) < ticks_diff(due, now):
                due = p[0]
        self._due = due

    def _on_reply(self, topic, payload):
        msg = parse(topic, payload, _TAG)
        if msg is None:
            return
        rid = str(msg.get("id"))
        p = self._pending.pop(rid, None)
        if p is None:
            log.warn(_TAG, "reply on %s for id %s that is not pending (late or duplicate)", topic, log.safe(rid, 16))
            return
        self._next_due()
        code = msg.get("code")
        self._report(rid, code, msg.get("data"), p[1], p[2], msg.get("message"))

    def _report(self, rid, code, data, callback, method, why=None):
        if callback is not None:
            try:
                callback(rid, code, data)
            except Exception as e:
                log.error(_TAG, "callback for %s %s failed: %s", method, rid, log.err(e))
            return
        if code == OK:
            log.info(_TAG, "%s %s: code 200", method, rid)
        else:
            log.warn(_TAG, "%s %s: code %s (%s)", method, rid, log.safe(code, 12), log.safe(why, 60))

    # ------------------------------------------------------------------ downlinks
    def _request(self, topic, payload):
        """(id, params) of a cloud request, or (id or None, None) when it is unusable."""
        msg = parse(topic, payload, _TAG)
        if msg is None:
            return None, None
        rid = msg.get("id")
        if rid is None:
            log.error(_TAG, "request on %s without an id: cannot answer it", topic)
            return None, None
        params = msg.get("params", {})
        if not isinstance(params, dict):
            log.error(_TAG, "request %s on %s: params is not an object", log.safe(rid, 16), topic)
            return str(rid), None
        return str(rid), params

    def _on_set(self, topic, payload):
        rid, params = self._request(topic, payload)
        if rid is None:
            return
        reply = self.topics.property_set_reply
        if params is None:
            return self._answer(reply, rid, BAD_PARAMS, None, "params must be an object")
        if self._set is None:
            log.warn(_TAG, "property set %s: no handler (thing.on_set)", log.safe(rid, 16))
            return self._answer(reply, rid, ERROR, None, "no property set handler")
        try:
            code = self._set(params)
        except Exception as e:
            log.error(_TAG, "property set handler failed for %s: %s", log.safe(rid, 16), log.err(e))
            return self._answer(reply, rid, ERROR, None, "handler failed")
        self._answer(reply, rid, OK if code is None else code, None, None)

    def _on_service(self, topic, identifier, payload):
        rid, params = self._request(topic, payload)
        if rid is None:
            return
        reply = self.topics.service_reply(identifier)
        if params is None:
            return self._answer(reply, rid, BAD_PARAMS, None, "params must be an object")
        try:
            out = self._services[identifier](params)
        except Exception as e:
            log.error(_TAG, "service %s handler failed for %s: %s", identifier, log.safe(rid, 16), log.err(e))
            return self._answer(reply, rid, ERROR, None, "handler failed")
        if isinstance(out, tuple) and len(out) == 2:
            code, data = out
        elif isinstance(out, int) and not isinstance(out, bool):
            code, data = out, None
        else:
            code, data = OK, out
        self._answer(reply, rid, code, data, None)

    def _answer(self, topic, rid, code, data, message):
        shown = log.safe(rid, 16)
        if not isinstance(code, int) or isinstance(code, bool):
            log.error(_TAG, "handler returned a %s, not a code, for %s: answering %d", type(code).__name__, shown, ERROR)
            code, message = ERROR, "bad handler code"
        reply = {"id": rid, "code": code, "data": data if data is not None else {}}
        if message:
            reply["message"] = message
        try:
            payload = json.dumps(reply)
            json.loads(payload)  # MicroPython writes what JSON cannot hold as <repr>: check
        except Exception as e:  # data the handler returned is not JSON
            log.error(_TAG, "reply data for %s is not JSON (%s): answering %d", shown, log.err(e), ERROR)
            payload = json.dumps({"id": rid, "code": ERROR, "data": {}, "message": "bad handler data"})
            code = ERROR
        log.info(_TAG, "reply %s code %d on %s", shown, code, topic)
        try:
            self.link.publish(topic, payload, 0)
        except Exception as e:
            log.error(_TAG, "reply %s not sent: %s", shown, log.err(e))
