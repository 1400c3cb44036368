# RRPC (revert RPC, docs/aliyun.md section 12): the platform's synchronous call to a device.
# A server calls the RRpc API; the platform publishes the request on
# /sys/{pk}/{dn}/rrpc/request/{messageId} and waits at most 8 s for the device's answer on
# /sys/{pk}/{dn}/rrpc/response/{messageId} (QoS 0, any bytes), else the caller gets TIMEOUT.
#
#   rpc = Rrpc(link, topics)     # subscribes /sys/{pk}/{dn}/rrpc/request/+
#   rpc.handler = fn             # fn(payload: bytes) -> bytes | str | dict (JSON) | None
#   ...in link.on_message: rpc.handle(topic, payload) -> True when it was a request
#
# The answer is published at once from the receive path (QoS 0: when a handler runs inside
# another command's wait the link sends it at the start of the next step, well inside 8 s).
# A handler that returns None sends no answer (the caller gets TIMEOUT: the handler chose
# so). One that raises, or returns another type, or a payload the module cannot carry, is
# logged and answered with ERROR_ANSWER, {"code":400,"message":"..."} (Alink's device code
# "request error", as firmware/thing.py answers a failed service): the caller learns at
# once that the device failed instead of waiting out the 8 s. A request without a
# messageId cannot be answered and is logged. What the request carried is never logged,
# only its length (firmware/log.py's rule).
import json

from firmware import log
from firmware.port import const, ticks_diff, ticks_ms

_TAG = "rrpc"
DEADLINE_MS = const(8000)  # the platform waits this long for the answer
_ID_MAX = const(32)  # the platform's messageIds: decimal numbers (a long, 19 digits)


def error_answer(why):
    """The answer when the device failed (bytes): {"code":400,"message":why}, why one of
    "handler failed", "bad answer", "answer not sent", "no handler"."""
    return json.dumps({"code": 400, "message": why}).encode()


class Rrpc:
    def __init__(self, link, topics, handler=None):
        self.link = link
        self.topics = topics
        self.handler = handler
        self.ticks = ticks_ms  # injectable for tests
        self.counters = {"requests": 0, "answered": 0, "errors": 0, "unanswered": 0}
        link.subscribe(topics.rrpc_request + "+", 0)

    def handle(self, topic, payload):
        """A downlink: True when it was an RRPC request (answered, or logged why not)."""
        prefix = self.topics.rrpc_request
        if not topic.startswith(prefix):
            return False
        self.counters["requests"] += 1
        mid = topic[len(prefix):]
        if not mid.isdigit() or len(mid) > _ID_MAX:  # the platform's ids are numbers
            self.counters["unanswered"] += 1
            log.error(_TAG, "request on %s has no usable messageId: cannot answer it", log.safe(topic, 100))
            return True
        start = self.ticks()
        answer = why = None
        if self.handler is None:
            why = "no handler: dev.on_rrpc is None"
        else:
            try:
                answer = self.handler(payload)
            except Exception as e:
                why = "handler failed: %s" % log.err(e)
        if why is None and answer is None:
            self.counters["unanswered"] += 1
            log.info(_TAG, "request %s (%d bytes): the handler gave no answer", mid, len(payload))
            return True
        if why is None:
            answer, why = _payload(answer)
        took = ticks_diff(self.ticks(), start)
        self._send(mid, answer, why, took)
        return True

    def _send(self, mid, answer, why, took):
        topic = self.topics.rrpc_response + mid
        if took >= DEADLINE_MS:
            log.warn(_TAG, "request %s: the handler took %d ms, the platform gave up at %d ms", mid, took, DEADLINE_MS)
        if why is None:
            try:
                if self._publish(mid, topic, answer, took):
                    self.counters["answered"] += 1
                return
            except (TypeError, ValueError) as e:  # what the module cannot carry (over 4100 bytes)
                why = "answer not sent: %s" % log.err(e)
        self.counters["errors"] += 1
        log.error(_TAG, "request %s: %s: answering code 400", mid, why)
        self._publish(mid, topic, error_answer(why.split(":")[0]), took)

    def _publish(self, mid, topic, answer, took):
        if not self.link.publish(topic, answer, 0):  # QoS 0, as the platform takes it
            log.warn(_TAG, "request %s: answer not sent (the link is down or has too many waiting)", mid)
            return False
        log.info(_TAG, "request %s: answer sent (handler %d ms)", mid, took)
        return True


def _payload(answer):
    """(bytes or str to publish, None) or (None, why) for what a handler returned."""
    if isinstance(answer, (bytes, bytearray, str)):
        return answer, None
    if isinstance(answer, dict):
        try:
            text = json.dumps(answer)
            json.loads(text)  # MicroPython writes what JSON cannot hold as <repr>: check
            return text, None
        except Exception as e:
            return None, "bad answer: the handler returned a dict that is not JSON (%s)" % log.err(e)
    return None, "bad answer: the handler returned a %s, not bytes, str or dict" % type(answer).__name__
