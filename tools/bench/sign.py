# How long one Aliyun sign takes with hashlib and with firmware/sign.py's pure-Python
# MD5/SHA-1 (what a board without hashlib.md5, e.g. a plain Pico, runs).
#   MICROPYPATH=. .venv/bin/micropython -m tools.bench.sign     (or python -m tools.bench.sign)
# One "sign" = HMAC over the seed's sign content with a 32-byte device secret, i.e. what
# mqtt_credentials()/auth_form() compute once per connection.
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b

from firmware import sign  # noqa: E402  (after the ticks shim above)

TARGET_MS = 5.0
KEY = b"y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
MSG = b"clientId862991419835241deviceName862991419835241productKeyb0FMK1Ga5cp"


def per_sign_ms(name, fallback, min_us=300000):
    sign._hmac(name, KEY, MSG, fallback)  # warm up
    n = 0
    t0 = ticks_us()
    while True:
        for _ in range(20):
            sign._hmac(name, KEY, MSG, fallback)
        n += 20
        dt = ticks_diff(ticks_us(), t0)
        if dt >= min_us:
            return dt / 1000 / n


def main():
    impl = sys.implementation.name
    print("sign benchmark on %s %s (message %d bytes, key %d bytes)" % (
        impl, ".".join(str(v) for v in sys.implementation.version[:3]), len(MSG), len(KEY)))
    ok = True
    for method, name in (("hmacmd5", "md5"), ("hmacsha1", "sha1"), ("hmacsha256", "sha256")):
        hw = per_sign_ms(name, False)
        line = "%-11s hashlib %8.4f ms/sign" % (method, hw)
        if name != "sha256":  # sha256 has no fallback: every build has hashlib.sha256
            fb = per_sign_ms(name, True)
            good = fb < TARGET_MS
            ok = ok and good
            line += "   fallback %8.4f ms/sign  %s (target < %.0f ms)" % (fb, "OK" if good else "TOO SLOW", TARGET_MS)
        print(line)
    print("fallback meets target: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
