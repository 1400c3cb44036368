# Log lines with a level and a time: "2026-11-24 06:30:01 I link: module -> attach".
# One sink for the whole firmware (print by default); tests and the REPL may swap it.
#
# The redaction rule: its one home. Everything the firmware prints, logs or raises follows it.
#   1. A command that carries a credential (AT+MCONFIG: the MQTT password or the iotToken;
#      AT+HTTPDATA's body: the signed form) is named by its label only, never by its text;
#      an echo of any command is dropped and named by what comes before its "=".
#   2. A server reply (auth, registration, a downlink) is never quoted: say what was wrong
#      with it (not JSON, no code, a missing field, its length) and at most the platform's
#      numeric code, whose meaning the firmware knows.
#   3. A secret (DeviceSecret, ProductSecret, iotToken, the MQTT password, a sign, and the
#      deviceToken and clientId a registration without pre-registration returns) is never
#      formatted, whole or in part, into a log line, an exception or printed output.
#   4. A config dict is shown only through config.masked(), never repr()'d; an exception
#      that is not the firmware's own is shown by err(): its type and a safe() message
#      (the repr of a UnicodeError holds every byte it was decoding).
#   5. Text from outside that is worth showing (a module's version, a platform message, a
#      request id) goes through safe(): kept only when it is short printable ASCII without a
#      run of _RUN letters/digits (what a secret, a token, a sign or base64 looks like),
#      else replaced by its length.
import time

from firmware.port import const

DEBUG = const(10)
INFO = const(20)
WARN = const(30)
ERROR = const(40)
_NAMES = {DEBUG: "D", INFO: "I", WARN: "W", ERROR: "E"}
_RUN = const(16)  # letters/digits in a row that look like a secret (words are shorter)

level = INFO
sink = None  # callable(line: str); None = print


_last = [None, ""]  # the second of the last stamp, and its text: lines come in bursts


def _stamp():
    now = int(time.time())
    if now != _last[0]:
        t = time.localtime(now)
        _last[0] = now
        _last[1] = "%04d-%02d-%02d %02d:%02d:%02d" % (t[0], t[1], t[2], t[3], t[4], t[5])
    return _last[1]


def safe(value, limit=40):
    """`value` (str, bytes or anything else) as text fit for a log line or an error: itself
    when it is at most `limit` printable ASCII characters with no run of _RUN letters and
    digits ('+', '/' and '=' count too: base64), else only how long it is."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode()
        except UnicodeError:
            return "(%d bytes, not shown)" % len(value)
    elif not isinstance(value, str):
        value = str(value)
    n = len(value)
    if n > limit:
        return "(%d characters, not shown)" % n
    run = 0
    for c in value:  # error paths only, and at most `limit` characters
        if c < " " or c > "~":
            return "(%d characters, not shown)" % n
        if c.isalpha() or c.isdigit() or c in "+/=":
            run += 1
            if run >= _RUN:
                return "(%d characters, not shown)" % n
        else:
            run = 0
    return value


def err(e, limit=200):
    """An exception for a log line: its type and a safe() message, never its repr."""
    msg = safe(str(e), limit)
    return "%s: %s" % (type(e).__name__, msg) if msg else type(e).__name__


def log(lvl, tag, msg, *args):
    if lvl < level:
        return
    if args:
        try:
            msg = msg % args
        except Exception:  # a bad format must never take the caller down (nor show its args)
            msg = "%s (bad log format for %d argument(s))" % (msg, len(args))
    if sink is None:  # printed in pieces: no copy of the whole line in the heap
        print(_stamp(), _NAMES.get(lvl, "?"), tag + ":", msg)
    else:
        sink("%s %s %s: %s" % (_stamp(), _NAMES.get(lvl, "?"), tag, msg))


def debug(tag, msg, *args):
    log(DEBUG, tag, msg, *args)


def info(tag, msg, *args):
    log(INFO, tag, msg, *args)


def warn(tag, msg, *args):
    log(WARN, tag, msg, *args)


def error(tag, msg, *args):
    log(ERROR, tag, msg, *args)
