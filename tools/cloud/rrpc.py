"""The local cloud's RRPC, as the platform's RRpc API does it (docs/aliyun.md section 12): a
request published to /sys/{pk}/{dn}/rrpc/request/{messageId}, then at most `timeout_ms`
(1000..8000, the API's range; 8000 by default) for the device's publish on
/sys/{pk}/{dn}/rrpc/response/{messageId}. The result is the API's: RrpcCode SUCCESS (with
PayloadBase64Byte), TIMEOUT or OFFLINE, and MessageId; plus "ms", how long the answer took.
An answer after the timeout, or for an id nobody waits for, is dropped (counted in
"late"), as the platform drops it.

    call(state, publish, online, pk, dn, payload, timeout_ms)   blocks (the control API's thread)
    on_response(state, pk, dn, message_id, data)                the broker, for each response
"""
import base64
import itertools
import threading
import time

TIMEOUT_MS = 8000
_ids = itertools.count(int(time.time() * 1000) * 1000)  # numbers like the platform's (a long)


class Calls:
    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}  # (pk, dn, messageId) -> [Event, answer bytes or None]
        self.late = 0


def _calls(state):
    with state.lock:
        c = getattr(state, "rrpc", None)
        if c is None:
            c = state.rrpc = Calls()
        return c


def call(state, publish, online, pk, dn, payload, timeout_ms=TIMEOUT_MS):
    """One RRPC call: publish(topic, payload bytes) sends the request; online(pk, dn) says
    whether the device is connected. Returns the API's answer as a dict."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not 1000 <= timeout_ms <= 8000:
        raise ValueError("timeout_ms must be a whole number in 1000..8000 (the RRpc API's Timeout)")
    mid = str(next(_ids))
    if not online(pk, dn):
        return {"RrpcCode": "OFFLINE", "MessageId": mid}
    c = _calls(state)
    slot = [threading.Event(), None]
    with c.lock:
        c.pending[(pk, dn, mid)] = slot
    start = time.monotonic()
    try:
        publish("/sys/%s/%s/rrpc/request/%s" % (pk, dn, mid), payload)
        answered = slot[0].wait(timeout_ms / 1000)
    finally:
        with c.lock:
            c.pending.pop((pk, dn, mid), None)
    ms = int((time.monotonic() - start) * 1000)
    if not answered:
        return {"RrpcCode": "TIMEOUT", "MessageId": mid, "ms": ms}
    return {"RrpcCode": "SUCCESS", "MessageId": mid, "ms": ms,
            "PayloadBase64Byte": base64.b64encode(slot[1]).decode()}


def on_response(state, pk, dn, mid, data):
    """A device's publish on .../rrpc/response/{mid}: hands it to the waiting call; True if one waited."""
    c = _calls(state)
    with c.lock:
        slot = c.pending.get((pk, dn, mid))
        if slot is None or slot[0].is_set():
            c.late += 1
            return False
        slot[1] = bytes(data)
        slot[0].set()
        return True
