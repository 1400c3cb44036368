# Aliyun IoT device signer: HMAC-MD5/SHA1/SHA256 and the sign rule (see
# docs/aliyun.md, section 2). Every sign is HMAC(secret, sign_content(fields)): fields sorted
# by name, name+value joined.
#   mqtt_credentials()  Flow B, MQTT direct: (clientId, username, password)
# The form bodies of Flow A (/auth/devicename) and Flow C (/auth/register/device) are built
# in firmware/auth.py from the same checks and sign_hex(), loaded only by the flows that POST.
#
# hashlib is used when the board has the digest. A plain Raspberry Pi Pico build has no
# hashlib.md5 (MicroPython ties md5 to TLS support), so MD5 and SHA-1 also exist in pure
# Python (firmware/digest.py, imported only then). Built-in hash objects have no hexdigest()/copy(): digest() + hexlify.
# Error messages name the field and never echo a value (a secret must not reach a log).
from firmware.aliyun import SIGN_METHODS
from firmware.port import const, hexlify

try:
    import hashlib as _hashlib
except ImportError:  # a build without hashlib at all: the fallbacks cover md5/sha1
    _hashlib = None

_BLOCK = const(64)
_MAX_CLIENT_ID = const(64)

# method name (lower case) -> digest name
_METHODS = {m: m[4:] for m in SIGN_METHODS}

# HMAC pads as 512-bit integers: key ^ pad over the whole block in one int operation.
_IPAD = int.from_bytes(b"\x36" * 64, "big")
_OPAD = int.from_bytes(b"\x5c" * 64, "big")


def _fallback(name, head, data):
    """Pure-Python md5/sha1 of head + data, loaded only where hashlib lacks the digest."""
    from firmware.digest import digest

    return digest(name, head, data)


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


# --- argument checks (firmware/auth.py uses them too) ---------------------------------


def digest_name(method):
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


def check_secret(value, field):
    value = _bytes(value, field)
    if not value:
        raise ValueError(field + ": must not be empty")
    return value


def check_text(value, field):
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


def check_name(value, field):
    value = check_text(value, field)
    if "|" in value or "&" in value:
        raise ValueError(field + ": must not contain '|' or '&'")
    return value


def check_client_id(value, default):
    if value is None:
        value = default
    value = check_text(value, "client_id")
    if "|" in value:
        raise ValueError("client_id: must not contain '|'")
    if len(value) > _MAX_CLIENT_ID:
        raise ValueError("client_id: at most 64 characters")
    return value


def check_timestamp(value):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or not value.isdigit():
        raise ValueError("timestamp: must be milliseconds as decimal digits")
    return value


# --- the sign rule -------------------------------------------------------------------


def sign_content(fields):
    """The platform's sign content: (name, value) pairs sorted by name, name + value
    concatenated with no separator. None values are left out."""
    return "".join(n + v for n, v in sorted(f for f in fields if f[1] is not None))


def sign_hex(name, secret, fields):
    return hexlify(_hmac(name, secret, sign_content(fields).encode())).decode()


# --- public API ----------------------------------------------------------------------


def hmac_hex(method, key, message):
    """Lower-case hex HMAC. method: hmacmd5 / hmacsha1 / hmacsha256 (any case);
    key and message: str (UTF-8) or bytes."""
    name = digest_name(method)
    return hexlify(_hmac(name, check_secret(key, "key"), _bytes(message, "message"))).decode()


def mqtt_credentials(product_key, device_name, device_secret, client_id=None,
                     method="hmacsha256", timestamp=None, securemode=2):
    """Flow B (MQTT direct): returns (mqtt_client_id, username, password).
    client_id defaults to "{product_key}.{device_name}"; timestamp (ms) is signed and
    sent only when given; securemode 2 = TLS, 3 = plain TCP."""
    pk = check_name(product_key, "product_key")
    dn = check_name(device_name, "device_name")
    ds = check_secret(device_secret, "device_secret")
    cid = check_client_id(client_id, pk + "." + dn)
    name = digest_name(method)
    ts = check_timestamp(timestamp)
    if securemode not in (2, 3):
        raise ValueError("securemode: must be 2 (TLS) or 3 (TCP)")
    password = sign_hex(name, ds, (("clientId", cid), ("deviceName", dn), ("productKey", pk), ("timestamp", ts)))
    method = "hmac" + name
    if ts is None:
        mqtt_id = "%s|securemode=%d,signmethod=%s|" % (cid, securemode, method)
    else:
        mqtt_id = "%s|securemode=%d,signmethod=%s,timestamp=%s|" % (cid, securemode, method, ts)
    return mqtt_id, dn + "&" + pk, password
