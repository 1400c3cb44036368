# Aliyun IoT device signer: HMAC-MD5/SHA1/SHA256 and the three credential shapes the
# platform takes (see /work/shared/ALIYUN.md):
#   mqtt_credentials()  Flow B, MQTT direct: (clientId, username, password)
#   auth_form()         Flow A, body of POST /auth/devicename (its length goes to AT+HTTPDATA)
#   register_form()     Flow C, body of POST /auth/register/device (one type, one secret)
# Every sign is HMAC(secret, sign_content(fields)): fields sorted by name, name+value joined.
#
# hashlib is used when the board has the digest. A plain Raspberry Pi Pico build has no
# hashlib.md5 (MicroPython ties md5 to TLS support), so MD5 and SHA-1 also exist in pure
# Python here. Built-in hash objects have no hexdigest()/copy(): digest() + hexlify.
# Error messages name the field and never echo a value (a secret must not reach a log).
from struct import pack, pack_into, unpack_from

from firmware.port import const, hexlify

try:
    import hashlib as _hashlib
except ImportError:  # a build without hashlib at all: the fallbacks cover md5/sha1
    _hashlib = None

_M32 = const(0xFFFFFFFF)
_BLOCK = const(64)
_MAX_CLIENT_ID = const(64)

# method name (lower case) -> digest name
_METHODS = {"hmacmd5": "md5", "hmacsha1": "sha1", "hmacsha256": "sha256"}
METHODS = sorted(_METHODS)  # the sign methods Aliyun knows, for config checks

# HMAC pads as 512-bit integers: key ^ pad over the whole block in one int operation.
_IPAD = int.from_bytes(b"\x36" * 64, "big")
_OPAD = int.from_bytes(b"\x5c" * 64, "big")

# RFC 3986 unreserved characters: everything else is percent-encoded in a form body.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_HEXU = b"0123456789ABCDEF"

# --- MD5 (RFC 1321) tables -----------------------------------------------------------
# K[i] = floor(abs(sin(i + 1)) * 2**32), written out so no float maths runs on the board.
_MD5_K = (
    0xD76AA478, 0xE8C7B756, 0x242070DB, 0xC1BDCEEE, 0xF57C0FAF, 0x4787C62A, 0xA8304613, 0xFD469501,
    0x698098D8, 0x8B44F7AF, 0xFFFF5BB1, 0x895CD7BE, 0x6B901122, 0xFD987193, 0xA679438E, 0x49B40821,
    0xF61E2562, 0xC040B340, 0x265E5A51, 0xE9B6C7AA, 0xD62F105D, 0x02441453, 0xD8A1E681, 0xE7D3FBC8,
    0x21E1CDE6, 0xC33707D6, 0xF4D50D87, 0x455A14ED, 0xA9E3E905, 0xFCEFA3F8, 0x676F02D9, 0x8D2A4C8A,
    0xFFFA3942, 0x8771F681, 0x6D9D6122, 0xFDE5380C, 0xA4BEEA44, 0x4BDECFA9, 0xF6BB4B60, 0xBEBFBC70,
    0x289B7EC6, 0xEAA127FA, 0xD4EF3085, 0x04881D05, 0xD9D4D039, 0xE6DB99E5, 0x1FA27CF8, 0xC4AC5665,
    0xF4292244, 0x432AFF97, 0xAB9423A7, 0xFC93A039, 0x655B59C3, 0x8F0CCC92, 0xFFEFF47D, 0x85845DD1,
    0x6FA87E4F, 0xFE2CE6E0, 0xA3014314, 0x4E0811A1, 0xF7537E82, 0xBD3AF235, 0x2AD7D2BB, 0xEB86D391,
)
# Message word used by each of the 64 steps.
_MD5_G = bytes(
    [i for i in range(16)]
    + [(5 * i + 1) & 15 for i in range(16)]
    + [(3 * i + 5) & 15 for i in range(16)]
    + [(7 * i) & 15 for i in range(16)]
)
# Left-rotation amounts, per round (each round repeats its 4 amounts 4 times).
_MD5_S = bytes((7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4)

# Scratch for SHA-1's message schedule: allocated once, reused by every block.
_W = [0] * 80


def _md5_blocks(buf, state):
    # `buf` is whole 64-byte blocks (already padded); `state` is a 4-item list, updated.
    K = _MD5_K
    G = _MD5_G
    S = _MD5_S
    M = _M32
    a0, b0, c0, d0 = state
    for off in range(0, len(buf), 64):
        X = unpack_from("<16I", buf, off)
        a = a0
        b = b0
        c = c0
        d = d0
        for i in range(16):
            t = (a + (d ^ (b & (c ^ d))) + K[i] + X[i]) & M
            s = S[i]
            a = d
            d = c
            c = b
            b = (b + ((t << s) & M | t >> (32 - s))) & M
        for i in range(16, 32):
            t = (a + (c ^ (d & (b ^ c))) + K[i] + X[G[i]]) & M
            s = S[i]
            a = d
            d = c
            c = b
            b = (b + ((t << s) & M | t >> (32 - s))) & M
        for i in range(32, 48):
            t = (a + (b ^ c ^ d) + K[i] + X[G[i]]) & M
            s = S[i]
            a = d
            d = c
            c = b
            b = (b + ((t << s) & M | t >> (32 - s))) & M
        for i in range(48, 64):
            t = (a + (c ^ (b | (d ^ M))) + K[i] + X[G[i]]) & M
            s = S[i]
            a = d
            d = c
            c = b
            b = (b + ((t << s) & M | t >> (32 - s))) & M
        a0 = (a0 + a) & M
        b0 = (b0 + b) & M
        c0 = (c0 + c) & M
        d0 = (d0 + d) & M
    state[0] = a0
    state[1] = b0
    state[2] = c0
    state[3] = d0


def _sha1_blocks(buf, state):
    # `buf` is whole 64-byte blocks (already padded); `state` is a 5-item list, updated.
    W = _W
    M = _M32
    h0, h1, h2, h3, h4 = state
    for off in range(0, len(buf), 64):
        W[0:16] = unpack_from(">16I", buf, off)
        for i in range(16, 80):
            x = W[i - 3] ^ W[i - 8] ^ W[i - 14] ^ W[i - 16]
            W[i] = (x << 1) & M | x >> 31
        a = h0
        b = h1
        c = h2
        d = h3
        e = h4
        for i in range(20):
            t = ((a << 5) & M | a >> 27) + (d ^ (b & (c ^ d))) + e + 0x5A827999 + W[i]
            e = d
            d = c
            c = (b << 30) & M | b >> 2
            b = a
            a = t & M
        for i in range(20, 40):
            t = ((a << 5) & M | a >> 27) + (b ^ c ^ d) + e + 0x6ED9EBA1 + W[i]
            e = d
            d = c
            c = (b << 30) & M | b >> 2
            b = a
            a = t & M
        for i in range(40, 60):
            t = ((a << 5) & M | a >> 27) + ((b & c) | (d & (b | c))) + e + 0x8F1BBCDC + W[i]
            e = d
            d = c
            c = (b << 30) & M | b >> 2
            b = a
            a = t & M
        for i in range(60, 80):
            t = ((a << 5) & M | a >> 27) + (b ^ c ^ d) + e + 0xCA62C1D6 + W[i]
            e = d
            d = c
            c = (b << 30) & M | b >> 2
            b = a
            a = t & M
        h0 = (h0 + a) & M
        h1 = (h1 + b) & M
        h2 = (h2 + c) & M
        h3 = (h3 + d) & M
        h4 = (h4 + e) & M
    state[0] = h0
    state[1] = h1
    state[2] = h2
    state[3] = h3
    state[4] = h4


def _fallback(name, head, data):
    """Pure-Python digest of head + data (md5 or sha1): the two are copied once, into the
    padded buffer, so HMAC never concatenates its pad and message separately."""
    lh = len(head)
    n = lh + len(data)
    size = (n + 72) & ~63  # room for the 0x80 byte and the 8-byte bit length
    buf = bytearray(size)
    buf[0:lh] = head
    buf[lh:n] = data
    buf[n] = 0x80
    bits = n << 3
    if name == "md5":
        pack_into("<II", buf, size - 8, bits & _M32, bits >> 32)
        state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
        _md5_blocks(buf, state)
        return pack("<4I", *state)
    pack_into(">II", buf, size - 8, bits >> 32, bits & _M32)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    _sha1_blocks(buf, state)
    return pack(">5I", *state)


def _ctor(name, force_fallback):
    """hashlib's constructor for `name`, or None to use the pure-Python code. SHA-256 has
    no pure-Python version: hashlib always has it (MicroPython builds it unconditionally)."""
    if force_fallback and name != "sha256":
        return None
    ctor = getattr(_hashlib, name, None) if _hashlib is not None else None
    if ctor is None and name == "sha256":
        raise ValueError("method: hmacsha256 needs hashlib.sha256, missing on this build")
    return ctor


def _digest(name, data, force_fallback=False):
    """Digest bytes of `data` ('md5', 'sha1' or 'sha256'). force_fallback=True uses the
    pure-Python code (md5/sha1) even where hashlib has the digest (tests, benchmark)."""
    ctor = _ctor(name, force_fallback)
    if ctor is not None:
        return ctor(data).digest()
    return _fallback(name, b"", data)


def _hmac(name, key, msg, force_fallback=False):
    """HMAC (RFC 2104) digest bytes; key and msg are bytes."""
    ctor = _ctor(name, force_fallback)
    if len(key) > _BLOCK:
        key = ctor(key).digest() if ctor is not None else _fallback(name, b"", key)
    k = int.from_bytes(key, "big") << ((_BLOCK - len(key)) << 3)  # zero-padded to 64 bytes
    ipad = (k ^ _IPAD).to_bytes(_BLOCK, "big")
    opad = (k ^ _OPAD).to_bytes(_BLOCK, "big")
    if ctor is None:
        return _fallback(name, opad, _fallback(name, ipad, msg))
    h = ctor(ipad)
    h.update(msg)
    inner = h.digest()
    h = ctor(opad)
    h.update(inner)
    return h.digest()


# --- argument checks ------------------------------------------------------------------


def _method(method):
    if isinstance(method, str):
        name = _METHODS.get(method.lower())
        if name is not None:
            return name
    raise ValueError("method: must be hmacmd5, hmacsha1 or hmacsha256")


def _bytes(value, field):
    """A key or message as bytes (str is UTF-8). Never echoes the value."""
    if isinstance(value, str):
        try:
            value = value.encode()
        except UnicodeError:
            raise ValueError(field + ": not valid text")
    elif isinstance(value, (bytes, bytearray)):
        value = bytes(value)
    elif value is None:
        value = b""
    else:
        raise ValueError(field + ": must be str or bytes")
    return value


def _secret(value, field):
    value = _bytes(value, field)
    if not value:
        raise ValueError(field + ": must not be empty")
    return value


def _text(value, field):
    if isinstance(value, (bytes, bytearray)):
        try:
            value = str(value, "utf-8")
        except UnicodeError:
            raise ValueError(field + ": not valid UTF-8")
    elif value is None:
        value = ""
    elif not isinstance(value, str):
        raise ValueError(field + ": must be a string")
    if not value:
        raise ValueError(field + ": must not be empty")
    return value


def _name(value, field):
    value = _text(value, field)
    if "|" in value or "&" in value:
        raise ValueError(field + ": must not contain '|' or '&'")
    return value


def _client_id(value, default):
    if value is None:
        value = default
    value = _text(value, "client_id")
    if "|" in value:
        raise ValueError("client_id: must not contain '|'")
    if len(value) > _MAX_CLIENT_ID:
        raise ValueError("client_id: at most 64 characters")
    return value


def _timestamp(value):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or not value.isdigit():
        raise ValueError("timestamp: must be milliseconds as decimal digits")
    return value


def _quote(value):
    """Form-field encoding: percent-encode every byte outside RFC 3986 unreserved."""
    raw = value.encode()
    for c in raw:
        if c not in _UNRESERVED:
            break
    else:
        return value  # the usual case (keys, names, hex signs): no copy
    out = bytearray()
    for c in raw:
        if c in _UNRESERVED:
            out.append(c)
        else:
            out.append(0x25)  # '%'
            out.append(_HEXU[c >> 4])
            out.append(_HEXU[c & 15])
    return str(out, "ascii")


# --- the sign rule -------------------------------------------------------------------


def sign_content(fields):
    """The platform's sign content: (name, value) pairs sorted by name, name + value
    concatenated with no separator. None values are left out."""
    return "".join(n + v for n, v in sorted(f for f in fields if f[1] is not None))


def _sign(name, secret, fields):
    return hexlify(_hmac(name, secret, sign_content(fields).encode())).decode()


# --- public API ----------------------------------------------------------------------


def hmac_hex(method, key, message):
    """Lower-case hex HMAC. method: hmacmd5 / hmacsha1 / hmacsha256 (any case);
    key and message: str (UTF-8) or bytes."""
    name = _method(method)
    return hexlify(_hmac(name, _secret(key, "key"), _bytes(message, "message"))).decode()


def mqtt_credentials(product_key, device_name, device_secret, client_id=None,
                     method="hmacsha256", timestamp=None, securemode=2):
    """Flow B (MQTT direct): returns (mqtt_client_id, username, password).
    client_id defaults to "{product_key}.{device_name}"; timestamp (ms) is signed and
    sent only when given; securemode 2 = TLS, 3 = plain TCP."""
    pk = _name(product_key, "product_key")
    dn = _name(device_name, "device_name")
    ds = _secret(device_secret, "device_secret")
    cid = _client_id(client_id, pk + "." + dn)
    name = _method(method)
    ts = _timestamp(timestamp)
    if securemode not in (2, 3):
        raise ValueError("securemode: must be 2 (TLS) or 3 (TCP)")
    password = _sign(name, ds, (("clientId", cid), ("deviceName", dn), ("productKey", pk), ("timestamp", ts)))
    method = "hmac" + name
    if ts is None:
        mqtt_id = "%s|securemode=%d,signmethod=%s|" % (cid, securemode, method)
    else:
        mqtt_id = "%s|securemode=%d,signmethod=%s,timestamp=%s|" % (cid, securemode, method, ts)
    return mqtt_id, dn + "&" + pk, password


def auth_form(product_key, device_name, device_secret, client_id=None, method="hmacmd5", timestamp=None):
    """Flow A: url-encoded body for POST /auth/devicename. client_id defaults to the
    device name (as in the seed walkthrough). signmethod is sent only when not hmacmd5,
    timestamp only when given. len(body) (ASCII) is the AT+HTTPDATA length."""
    pk = _name(product_key, "product_key")
    dn = _name(device_name, "device_name")
    ds = _secret(device_secret, "device_secret")
    cid = _client_id(client_id, dn)
    name = _method(method)
    ts = _timestamp(timestamp)
    sign = _sign(name, ds, (("clientId", cid), ("deviceName", dn), ("productKey", pk), ("timestamp", ts)))
    body = "productKey=%s&sign=%s&clientId=%s&deviceName=%s" % (_quote(pk), sign, _quote(cid), _quote(dn))
    if name != "md5":
        body += "&signmethod=hmac" + name
    if ts is not None:
        body += "&timestamp=" + ts
    return body


def register_form(product_key, device_name, product_secret, random, method="hmacsha256"):
    """Flow C: url-encoded body for POST /auth/register/device (note `signMethod`)."""
    pk = _name(product_key, "product_key")
    dn = _name(device_name, "device_name")
    ps = _secret(product_secret, "product_secret")
    rnd = _text(random, "random")
    name = _method(method)
    sign = _sign(name, ps, (("deviceName", dn), ("productKey", pk), ("random", rnd)))
    return "productKey=%s&deviceName=%s&random=%s&sign=%s&signMethod=hmac%s" % (
        _quote(pk), _quote(dn), _quote(rnd), sign, name)
