"""The local cloud's rules and its HTTP endpoint: the sign checks and verdicts of the three
ways a device gets in, as the platform defines them (Aliyun IoT's device-authentication
documents), with CPython's hmac module:
  Flow A  POST /auth/devicename        device triple -> iotId + iotToken (auth_devicename)
  Flow B  MQTT CONNECT, direct triple  clientId|securemode=..,signmethod=..| (check_connect)
          or the token of Flow A       username iotId, password iotToken
  Flow C  POST /auth/register/device   product secret -> deviceSecret (register_device)
Deliberately an independent implementation: it never imports firmware/sign.py. Every rule
reads and writes the shared CloudState (registry.py); the broker (broker.py) asks
check_connect for each CONNECT.

AuthHTTPServer serves the two Aliyun paths (form-encoded POST, JSON reply, HTTP 200 with
the platform code in the body, as iot-auth does) plus a private control API under
/_cloud/ (used by LocalCloud, api.py; it needs the console password).
"""
import hashlib
import hmac
import json
import re
import ssl
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tools.cloud.registry import random_id

CLIENT_ID_MAX = 64
KEEPALIVE_MIN, KEEPALIVE_MAX = 30, 1200
SIGN_METHODS = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}

# CONNACK return codes (MQTT 3.1.1) as Aliyun uses them (Flow B).
RC_OK, RC_CLIENT_ID, RC_UNAVAILABLE, RC_BAD_USER_PASS, RC_NOT_AUTHORISED = 0, 2, 3, 4, 5

# Platform reply codes (Flows A and C).
CODE_OK, CODE_BAD_SIGN, CODE_BAD_PARAM, CODE_UNKNOWN = 200, 401, 460, 500
CODE_NO_DEVICE, CODE_REG_DISABLED, CODE_REG_ACTIVE, CODE_REG_BAD_SIGN = 5001, 6288, 6289, 6600

_HEX = re.compile(r"^[0-9a-fA-F]+$")


def hmac_hex(method, secret, content):
    """HMAC(secret, content) as lower-case hex; method is one of SIGN_METHODS."""
    return hmac.new(secret.encode(), content.encode(), SIGN_METHODS[method]).hexdigest()


def sign_content(params):
    """The platform's sign content: parameters sorted by name, name+value concatenated."""
    return "".join(k + str(params[k]) for k in sorted(params))


def sign_ok(method, secret, params, sign):
    if not sign or not _HEX.match(sign):
        return False
    return hmac.compare_digest(hmac_hex(method, secret, sign_content(params)), sign.lower())


def reply(code, message, data=None):
    return {"code": code, "data": data if data is not None else {}, "message": message}


def parse_direct_client_id(client_id):
    """Split `{id}|k=v,k=v|` into (id, params); None when the form is broken."""
    if client_id.count("|") != 2 or not client_id.endswith("|"):
        return None
    ident, params_s, _ = client_id.split("|")
    params = {}
    for item in params_s.split(","):
        if not item:
            continue
        k, sep, v = item.partition("=")
        if not sep or not k:
            return None
        params[k] = v
    return ident, params


INSTANCE_AUTH = ".auth.iothub.aliyuncs.com"  # an instance's auth server: {instanceId} + this


# -- Flow A: POST /auth/devicename -------------------------------------------------------
def auth_devicename(state, form, host=None):
    for k in ("productKey", "deviceName", "clientId", "sign"):
        if not form.get(k):
            return reply(CODE_BAD_PARAM, "param error: %s is missing" % k)
    method = form.get("signmethod", "hmacmd5").lower() or "hmacmd5"
    if method not in SIGN_METHODS:
        return reply(CODE_BAD_PARAM, "param error: unsupported signmethod")
    if len(form["clientId"]) > CLIENT_ID_MAX:
        return reply(CODE_BAD_PARAM, "param error: clientId longer than 64")
    with state.lock:
        d = state.device(form["productKey"], form["deviceName"])
        if d is None or not d["enabled"] or not d["deviceSecret"]:
            return reply(CODE_NO_DEVICE, "device not found")
        signed = {k: v for k, v in form.items()
                  if k not in ("sign", "signmethod", "version", "resources")}
        if not sign_ok(method, d["deviceSecret"], signed, form["sign"]):
            return reply(CODE_BAD_SIGN, "sign check error")
        data = {"iotId": d["iotId"], "iotToken": state.issue_token(d["iotId"])}
        if "mqtt" in form.get("resources", "").split(","):
            data["resources"] = {"mqtt": mqtt_resource(state, d["productKey"], host)}
        return reply(CODE_OK, "success", data)


def mqtt_resource(state, pk, host=None):
    """resources.mqtt of the reply: like Aliyun ("aliyun", the default:
    {pk}.iot-as-mqtt.{region}.aliyuncs.com:1883, or {instanceId}.mqtt.iothub.aliyuncs.com:1883
    when the request came to an instance's auth host {instanceId}.auth.iothub.aliyuncs.com
    (its Host header), for clients that map those names to the local broker, e.g. the
    virtual module) or this broker's own address ("local": host and plain port, which also
    takes TLS as Aliyun's 1883 does)."""
    if state.resources == "local":
        return {"host": state.mqtt_host, "port": state.mqtt_port}
    name = (host or "").split(":")[0].lower()
    if name.endswith(INSTANCE_AUTH) and name != INSTANCE_AUTH[1:]:
        return {"host": name[: -len(INSTANCE_AUTH)] + ".mqtt.iothub.aliyuncs.com", "port": 1883}
    return {"host": "%s.iot-as-mqtt.%s.aliyuncs.com" % (pk, state.region), "port": 1883}


# -- Flow C: POST /auth/register/device --------------------------------------------------
def register_device(state, form):
    for k in ("productKey", "deviceName", "random", "sign"):
        if not form.get(k):
            return reply(CODE_BAD_PARAM, "param error: %s is missing" % k)
    method = (form.get("signMethod") or form.get("signmethod") or "hmacmd5").lower()
    if method not in SIGN_METHODS:
        return reply(CODE_BAD_PARAM, "param error: unsupported signMethod")
    pk, dn = form["productKey"], form["deviceName"]
    with state.lock:
        p = state.products.get(pk)
        if p is None:
            return reply(CODE_NO_DEVICE, "product not found")
        if not p["dynamicRegistration"] or not p["productSecret"]:
            return reply(CODE_REG_DISABLED, "dynamic registration is not enabled for this product")
        signed = {"deviceName": dn, "productKey": pk, "random": form["random"]}
        if not sign_ok(method, p["productSecret"], signed, form["sign"]):
            return reply(CODE_REG_BAD_SIGN, "sign check error")
        d = state.device(pk, dn)
        if d is not None and d["active"]:
            return reply(CODE_REG_ACTIVE, "device is already active")
        if d is None or not d["deviceSecret"]:
            d = state.add_device({"productKey": pk, "deviceName": dn, "deviceSecret": random_id(32)})
        d["active"] = True
        state.save()
        return reply(CODE_OK, "success",
                     {"productKey": pk, "deviceName": dn, "deviceSecret": d["deviceSecret"]})


# -- Flow B and token login: the MQTT CONNECT check ----------------------------------------
def check_connect(state, client_id, username, password, keepalive, tls, console=None):
    """Return (connack_rc, identity); identity is ("device", pk, dn) or ("cloud",).

    console: (username, password) of the privileged cloud-side client.
    """
    client_id = client_id or ""
    if isinstance(password, bytes):
        try:
            password = password.decode()
        except UnicodeDecodeError:
            return RC_BAD_USER_PASS, None
    if console and username == console[0]:
        if password is not None and hmac.compare_digest(password, console[1]):
            return RC_OK, ("cloud",)
        return RC_NOT_AUTHORISED, None
    if not username or password is None or password == "":
        return RC_BAD_USER_PASS, None
    if not (KEEPALIVE_MIN <= keepalive <= KEEPALIVE_MAX):
        return RC_UNAVAILABLE, None
    if "&" not in username:  # the token of Flow A: username iotId, password iotToken
        d = state.token_device(username, password)
        if d is None:
            return RC_UNAVAILABLE, None
        return RC_OK, ("device", d["productKey"], d["deviceName"])
    dn, _, pk = username.partition("&")
    if not dn or not pk or "&" in pk:
        return RC_BAD_USER_PASS, None
    parsed = parse_direct_client_id(client_id)
    if parsed is None:
        return RC_CLIENT_ID, None
    ident, params = parsed
    if not ident or len(ident) > CLIENT_ID_MAX:
        return RC_CLIENT_ID, None
    if params.get("authType") == "connwl":  # registered without pre-registration (mqttreg.py)
        from tools.cloud.mqttreg import check_connwl

        return check_connwl(state, ident, pk, dn, params, password, tls)
    method = params.get("signmethod", "hmacmd5").lower()
    mode = params.get("securemode")
    if method not in SIGN_METHODS or mode not in ("2", "3"):
        return RC_CLIENT_ID, None
    if state.strict_securemode and mode != ("2" if tls else "3"):
        return RC_CLIENT_ID, None  # securemode 2 is TLS, 3 plain TCP
    if not _HEX.match(password):
        return RC_BAD_USER_PASS, None
    with state.lock:
        d = state.device(pk, dn)
        if d is None or not d["enabled"] or not d["deviceSecret"]:
            return RC_NOT_AUTHORISED, None
        signed = {"clientId": ident, "deviceName": dn, "productKey": pk}
        if "timestamp" in params:
            signed["timestamp"] = params["timestamp"]
        if not sign_ok(method, d["deviceSecret"], signed, password):
            return RC_NOT_AUTHORISED, None
        return RC_OK, ("device", pk, dn)


# -- the HTTP endpoint ---------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalAliyunAuth/1.0"

    def log_message(self, fmt, *args):  # quiet unless the cloud runs verbose
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _form(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        url = urllib.parse.urlsplit(self.path)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and ctype != "application/x-www-form-urlencoded":
            return url.path, None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return url.path, None
        for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items():
            form[k] = v[0]
        return url.path, form

    def do_POST(self):
        path, form = self._form()
        if path in ("/auth/devicename", "/auth/register/device"):
            self.server.requests += 1
            if form is None:
                res = reply(CODE_BAD_PARAM, "param error: body must be application/x-www-form-urlencoded")
            elif path == "/auth/devicename":
                res = auth_devicename(self.server.state, form, self.headers.get("Host"))
            else:
                res = register_device(self.server.state, form)
            return self._send(200, res)
        if path.startswith("/_cloud/") and self.server.control is not None:
            if not hmac.compare_digest(self.headers.get("X-Cloud-Token", ""), self.server.control_token):
                return self._send(403, {"error": "forbidden"})
            try:
                return self._send(200, self.server.control(path[len("/_cloud/"):], form or {}))
            except Exception as e:  # report, keep serving
                return self._send(500, {"error": repr(e)})
        self._send(404, reply(404, "not found"))

    def do_GET(self):
        if self.path.startswith("/ota/") and self.server.state.state_dir:  # update packages (ota.py)
            from tools.cloud import ota

            return ota.serve(self, self.server.state.state_dir)
        self._send(404, reply(404, "not found"))


class AuthHTTPServer(ThreadingHTTPServer):
    """The auth endpoint on host:port (port 0 = free port); serve with serve_forever().
    tls=(certfile, keyfile): HTTPS, the handshake made in the connection's own thread (a
    client that refuses the certificate, or never speaks, holds up nobody)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state, host="127.0.0.1", port=0, control=None, control_token="", verbose=False,
                 tls=None):
        self.state, self.control, self.control_token, self.verbose = state, control, control_token, verbose
        self.requests = 0  # auth and registration requests answered
        self.tls_refused = 0  # handshakes that failed (a client that does not trust the certificate)
        self._tls = None
        if tls:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*tls)
        super().__init__((host, port), _Handler)

    def get_request(self):
        sock, addr = super().get_request()
        if self._tls is not None:
            sock.settimeout(30)
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, OSError)):  # a refused handshake, a client gone
            if isinstance(e, ssl.SSLError):
                self.tls_refused += 1
            if self.verbose:
                print("auth endpoint: %s: %r" % (client_address, e), flush=True)
            return
        super().handle_error(request, client_address)

    @property
    def port(self):
        return self.server_address[1]
