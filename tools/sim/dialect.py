"""The AT dialect's text, as the module writes and reads it: one home for the framing of a
reply (`\\r\\n<line>\\r\\n`, OK, ERROR, `+CME ERROR: n`), the parameter lists after `=`
(quoting, no backslash-quote) and the escapes inside quoted strings (`\\22` and friends).
Pure functions; the bottom of tools/sim/, used by the core and every part.
"""
import re

CME_NOT_ALLOWED = 3
CME_NO_SIM = 10
CME_SIM_BUSY = 14
CME_FAILED = 767


class ParamError(ValueError):
    """A malformed parameter list: the module answers a bare ERROR."""


def b(s):
    """str holding one char per byte (latin-1) -> bytes."""
    return s.encode("latin-1")


def lines(*items):
    """Each line (str or bytes) wrapped `\\r\\n<line>\\r\\n`."""
    return b"".join(b"\r\n" + (b(x) if isinstance(x, str) else x) + b"\r\n" for x in items)


OK = lines("OK")
ERROR = lines("ERROR")


def cme(n):
    return lines("+CME ERROR: %d" % n)


def parse_params(text):
    """Split the text after `=` into [(value, quoted)].

    A quoted string runs to the next `"` (the module has no backslash-quote; a `"` is
    written `\\22`), so it may hold `,` `|` `=`. Spaces around items are ignored
    (`AT+MSUB="t", 0` works). Values are str holding one char per byte (latin-1).
    """
    out = []
    i, n = 0, len(text)
    if not text.strip():
        return out
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise ParamError("unterminated string")
            out.append((text[i + 1:j], True))
            i = j + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                raise ParamError("text after a closing quote")
        else:
            j = text.find(",", i)
            if j < 0:
                j = n
            value = text[i:j].strip()
            if '"' in value:
                raise ParamError("stray quote")
            out.append((value, False))
            i = j
        if i >= n:
            return out
        i += 1  # the comma


def set_params(kind, args, *counts):
    """The parameter list of a set command (`AT+X=...`). Any other kind, or a number of
    parameters not in `counts` (when given), is a bare ERROR: ParamError."""
    if kind != "set":
        raise ParamError("not a set command")
    p = parse_params(args)
    if counts and len(p) not in counts:
        raise ParamError("%d parameters" % len(p))
    return p


def integer(p, lo=None, hi=None):
    """A parameter (value, quoted) as an int in [lo, hi], else ParamError."""
    value, _quoted = p  # the module takes `"1884"` as well as `1884` (inferred, seen in examples)
    if not re.fullmatch(r"\d{1,9}", value):
        raise ParamError("not a number")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ParamError("out of range")
    return v


_ESCAPES = {"22": '"', "0D": "\r", "0A": "\n", "5C": "\\"}


def decode_escapes(s):
    """`\\22` -> `"`, `\\0D` -> CR, `\\0A` -> LF, `\\5C` -> `\\` (hex in either case); any
    other backslash stays as it is."""
    if "\\" not in s:
        return s
    out = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and s[i + 1:i + 3].upper() in _ESCAPES:
            out.append(_ESCAPES[s[i + 1:i + 3].upper()])
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode_escapes(data):
    """The inverse, for tests and tools: bytes/str -> the text to put inside MPUB's quotes."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("latin-1")
    return (data.replace("\\", "\\5C").replace('"', "\\22")
            .replace("\r", "\\0D").replace("\n", "\\0A"))
