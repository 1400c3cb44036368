# Log lines with a level and a time: "2026-11-24 06:30:01 W at: unknown line b'...'".
# One sink for the whole firmware (print by default); tests and the REPL may swap it.
import time

from firmware.port import const

DEBUG = const(10)
INFO = const(20)
WARN = const(30)
ERROR = const(40)
_NAMES = {DEBUG: "D", INFO: "I", WARN: "W", ERROR: "E"}

level = INFO
sink = None  # callable(line: str); None = print


def _stamp():
    t = time.localtime()
    return "%04d-%02d-%02d %02d:%02d:%02d" % (t[0], t[1], t[2], t[3], t[4], t[5])


def log(lvl, tag, msg, *args):
    if lvl < level:
        return
    if args:
        try:
            msg = msg % args
        except Exception:  # a bad format must never take the caller down
            msg = "%s %r" % (msg, args)
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
