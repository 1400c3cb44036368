# Aliyun's auth server (firmware/aliyun.py auth_host()) through the module's HTTP POST:
#   auth_form()      Flow A, body of POST /auth/devicename (its length goes to AT+HTTPDATA)
#   register_form()  Flow C, body of POST /auth/register/device (one type, one secret)
#   http_auth()      Flow A end to end: sign, POST, the iotId/iotToken of the answer
#   post_form()      POST a form, the answer's data or a CloudError naming its code
#   *_g()            the same as generators of the engine (firmware/at.py cmd_g), for the
#                    link's auth phase, which the asyncio front (firmware/aio.py) awaits
# Loaded only by the "http" flow and by dynamic registration: a device on the direct MQTT
# flow never holds this code. Signs and field checks come from firmware/sign.py.
# The answers hold secrets (an iotToken, a new DeviceSecret): following the redaction rule
# (firmware/log.py) an error about one says what was wrong with it and its length, or the
# platform's numeric code, never any of its bytes (not even its "message").
import json

from firmware import log
from firmware.aliyun import auth_host, client_id
from firmware.errors import CloudError
from firmware.sign import check_client_id, check_name, check_secret, check_text, check_timestamp, digest_name, sign_hex

_TAG = "aliyun"

AUTH_CODES = {
    401: "bad sign: check DeviceSecret and the sign method",
    460: "bad request parameter",
    500: "server error",
    5001: "device not found: check ProductKey and DeviceName",
    6200: "auth type mismatch (the product does not use this auth flow)",
    6288: "dynamic registration is not enabled for the product",
    6289: "device is already active: dynamic registration gives its secret only once",
    6600: "bad sign for registration: check ProductSecret",
}

# RFC 3986 unreserved characters: everything else is percent-encoded in a form body.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_HEXU = b"0123456789ABCDEF"


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


def auth_form(product_key, device_name, device_secret, client_id=None, method="hmacmd5", timestamp=None):
    """Flow A: url-encoded body for POST /auth/devicename. client_id defaults to the
    device name (as in the seed walkthrough). signmethod is sent only when not hmacmd5,
    timestamp only when given. len(body) (ASCII) is the AT+HTTPDATA length."""
    pk = check_name(product_key, "product_key")
    dn = check_name(device_name, "device_name")
    ds = check_secret(device_secret, "device_secret")
    cid = check_client_id(client_id, dn)
    name = digest_name(method)
    ts = check_timestamp(timestamp)
    sign = sign_hex(name, ds, (("clientId", cid), ("deviceName", dn), ("productKey", pk), ("timestamp", ts)))
    body = "productKey=%s&sign=%s&clientId=%s&deviceName=%s" % (_quote(pk), sign, _quote(cid), _quote(dn))
    if name != "md5":
        body += "&signmethod=hmac" + name
    if ts is not None:
        body += "&timestamp=" + ts
    return body


def register_form(product_key, device_name, product_secret, random, method="hmacsha256"):
    """Flow C: url-encoded body for POST /auth/register/device (note `signMethod`)."""
    pk = check_name(product_key, "product_key")
    dn = check_name(device_name, "device_name")
    ps = check_secret(product_secret, "product_secret")
    rnd = check_text(random, "random")
    name = digest_name(method)
    sign = sign_hex(name, ps, (("deviceName", dn), ("productKey", pk), ("random", rnd)))
    return "productKey=%s&deviceName=%s&random=%s&sign=%s&signMethod=hmac%s" % (
        _quote(pk), _quote(dn), _quote(rnd), sign, name)


def auth_url(cfg, path="/auth/devicename"):
    return "https://%s%s" % (auth_host(cfg), path)


def _reply(data):
    """The JSON object of an answer, or None (not JSON, not an object, not UTF-8)."""
    try:
        reply = json.loads(data)
    except Exception:  # ValueError; UnicodeError, whose repr would hold the whole answer
        return None
    return reply if isinstance(reply, dict) else None


def _is_text(v):
    return isinstance(v, str) and v != ""


def post_form(modem, cfg, path, body):
    """POST a form to the auth server through the module (bearer open); the JSON's data
    (a dict). CloudError names what was wrong with the answer, never what it held."""
    return _answer(path, *modem.http_post(auth_url(cfg, path), body))


def post_form_g(modem, cfg, path, body):
    """post_form() as a generator of the engine (firmware/at.py cmd_g)."""
    return _answer(path, *(yield from modem.http_post_g(auth_url(cfg, path), body)))


def _answer(path, status, data):
    reply = _reply(data)  # raised below, outside any except: no chained decode error
    if reply is None:
        raise CloudError(status, "%s: HTTP %d, the %d-byte answer is not a JSON object" % (path, status, len(data)))
    code = reply.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise CloudError(status, "%s: HTTP %d, the %d-byte answer has no numeric code" % (path, status, len(data)))
    if code != 200:
        raise CloudError(code, "%s refused: code %d, %s" % (path, code, AUTH_CODES.get(code, "unknown code")))
    data = reply.get("data")
    return data if isinstance(data, dict) else {}


def http_auth(modem, cfg):
    """Flow "http": (username=iotId, password=iotToken, host or None, port or None)."""
    return _token(post_form(modem, cfg, "/auth/devicename", _auth_body(cfg)))


def http_auth_g(modem, cfg):
    """http_auth() as a generator of the engine (the link's auth phase)."""
    return _token((yield from post_form_g(modem, cfg, "/auth/devicename", _auth_body(cfg))))


def _auth_body(cfg):
    body = auth_form(cfg["product_key"], cfg["device_name"], cfg["device_secret"], client_id(cfg), cfg["sign_method"])
    return body + "&resources=mqtt"


def _token(data):
    iot_id, token = data.get("iotId"), data.get("iotToken")
    if not _is_text(iot_id) or not _is_text(token):
        raise CloudError(200, "/auth/devicename: answer without %s as text" % ("iotId" if not _is_text(iot_id) else "iotToken"))
    mqtt = data.get("resources")
    mqtt = mqtt.get("mqtt") if isinstance(mqtt, dict) else None
    host = port = None
    if isinstance(mqtt, dict):
        host, port = mqtt.get("host"), mqtt.get("port")
        if not _is_text(host):
            host = None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            port = None
    log.info(_TAG, "token issued (lives 7 days)")
    return iot_id, token, host, port
