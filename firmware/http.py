# HTTP through the module (AT+HTTPINIT ... AT+HTTPTERM): the POST of the seed's auth request
# and of dynamic registration, the ranged GET of an OTA download. A module of its own so that
# devices on the direct MQTT flow never load it. HTTPTERM always follows, also after a
# failure (_session_g).
from firmware import log
from firmware.at import escape, ints, quoted
from firmware.errors import ATError, ModemError
from firmware.port import const

_TAG = "http"
_HTTP_MS = const(60000)  # HTTPACTION: DNS, TLS handshake and the request

STATUS = {
    600: "not HTTP PDU",
    601: "network error (no bearer, or the connection failed)",
    602: "no memory",
    603: "DNS error",
    604: "stack busy",
    605: "SSL channel setup failed (also: the server's certificate did not verify)",
    606: "SSL communication alert error",
}


def post_g(modem, url, body, content_type):
    """POST `body` (str or bytes) to `url`; return (status, response bytes). A generator of
    the engine (firmware/at.py cmd_g): Air72x.http_post() runs it."""
    at = modem.at
    if isinstance(body, str):
        body = body.encode()
    url = quoted("url", url)
    try:
        yield from at.cmd_g("AT+HTTPINIT")
    except ATError:  # a previous session was left open: close it and start again
        yield from _term_g(at)
        yield from at.cmd_g("AT+HTTPINIT")
    return (yield from _session_g(at, _post_g(at, url, body, content_type)))


def _post_g(at, url, body, content_type):
    yield from at.cmd_g('AT+HTTPPARA="URL","%s"' % url)
    header = escape(("Content-Type: " + content_type).encode()).decode()
    yield from at.cmd_g('AT+HTTPPARA="USER_DEFINED","%s"' % header)
    yield from at.cmd_g("AT+HTTPDATA=%d,20000" % len(body), data=body, timeout=25000)
    yield from at.cmd_g("AT+HTTPACTION=1", then=(b"+HTTPACTION",), timeout=_HTTP_MS)
    v = ints(at.final)
    if len(v) < 3 or v[1] is None:
        raise ModemError("HTTPACTION answer unreadable (%d bytes)" % len(at.final), "connect")
    status, length = v[1], v[2] or 0
    if status in STATUS or status >= 600:
        raise ModemError("HTTP request failed in the module: %d %s" % (status, STATUS.get(status, "")), "connect")
    return status, (yield from _read_g(at, status, length)) if length else b""


def get_range(modem, url, start, end):
    """GET bytes start..end (inclusive) of `url`, or start.. to its end with end < start:
    AT+HTTPPARA "BREAK" / "BREAKEND", the module's resumable download (docs/ota.md says why
    not AT+HTTPREAD=<start>,<len>). Returns (status, bytes): 206 for a part, 200 when the
    server sent the whole file; ModemError when the module could not make the request."""
    return modem.at.run(get_range_g(modem, url, start, end))


def get_range_g(modem, url, start, end):
    """get_range() as a generator of the engine."""
    at = modem.at
    url = quoted("url", url)
    yield from _term_g(at)  # a session left open by an interrupted chunk would make HTTPINIT fail
    yield from at.cmd_g("AT+HTTPINIT")
    return (yield from _session_g(at, _get_g(at, url, start, end)))


def _get_g(at, url, start, end):
    for para in ('"URL","%s"' % url, '"BREAK",%d' % start, '"BREAKEND",%d' % end):
        yield from at.cmd_g("AT+HTTPPARA=" + para)
    yield from at.cmd_g("AT+HTTPACTION=0", then=(b"+HTTPACTION",), timeout=_HTTP_MS)
    v = ints(at.final)
    status = v[1] if len(v) > 2 else None
    if status is None or status >= 600:
        raise ModemError("GET failed in the module: %s %s" % (status, STATUS.get(status or 0, "")), "connect")
    return status, (yield from _read_g(at, status, v[2])) if v[2] else b""


def _read_g(at, status, length):
    """The answer's `length` bytes (AT+HTTPREAD), or a ModemError when fewer came."""
    yield from at.cmd_g("AT+HTTPREAD", info=b"+HTTPREAD", timeout=_HTTP_MS)
    data = at.payload or b""
    if len(data) != length:
        raise ModemError("HTTP %d: HTTPREAD gave %d of %d bytes" % (status, len(data), length), "connect")
    return data


def _session_g(at, g):
    """Run g, the requests of one HTTP session, and end it with HTTPTERM whatever happens;
    but not when a cancelled asyncio task closes it (nothing can be sent then: the next
    session's HTTPINIT finds it open and ends it first)."""
    try:
        result = yield from g
    except GeneratorExit:
        raise
    except BaseException:
        yield from _term_g(at)
        raise
    yield from _term_g(at)
    return result


def _term_g(at):
    try:
        yield from at.cmd_g("AT+HTTPTERM")
    except ModemError as e:
        log.debug(_TAG, "HTTPTERM: %s", e)
