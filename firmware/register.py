# Dynamic registration (one type, one secret): with only `product_secret` in config.json the
# device asks the platform for its credentials once, by the route "register" names:
#   "https"     POST /auth/register/device (through the module, the bearer open) with
#               auth.register_form(pk, dn, ps, random, sign_method): the DeviceSecret.
#   "mqtt"      an MQTT connection over TLS that is a registration request (authType=register,
#               for devices added in the console beforehand): the platform pushes the
#               DeviceSecret on /ext/register, then closes the connection.
#   "mqtt_nwl"  the same without pre-registration (authType=regnwl): the platform pushes a
#               clientId and a deviceToken on /ext/regnwl; later connects log in with them
#               (aliyun.credentials: clientId|securemode=-2,authType=connwl|, the token as the
#               password).
# The MQTT request (docs/aliyun.md, section 5): clientId "{client_id}|securemode=2 (-2 without
# pre-registration or with an instance_id),authType=...,random=...,signmethod=...
# [,instanceId=...]|", username "{dn}&{pk}", password HMAC(product secret, "deviceName" dn
# "productKey" pk "random" random).
# What comes back comes only once, so it is stored at once, atomically (firmware/secret.py):
# written to secret.json.tmp, then os.rename'd over secret.json (next to config.json): a reset
# mid-write leaves the old file (or none), never half a secret. config.load() merges
# secret.json (secret.merge()) so every later start uses it and never registers again. None
# of it is ever logged, nor anything the answer holds (the redaction rule, firmware/log.py):
# errors name what was wrong.
#
#   6289 "already active" (HTTPS), or a refused CONNACK (MQTT): the platform will not register
#   this device (again). The log says what to check and what to do (copy the DeviceSecret
#   from the console, or reset the device there), and the next try waits backoff_refused_ms.
import random

from firmware import aliyun, log
from firmware.errors import CloudError, ModemError
from firmware.port import const, sleep_ms, ticks_add, ticks_diff, ticks_ms
from firmware.secret import FILE, load, merge, path_for, save  # noqa: F401  (the stored secret's home)

_TAG = "register"
PATH = "/auth/register/device"
_ALREADY_ACTIVE = const(6289)
MQTT_REFUSED = const(-1)  # CloudError.code of a refused MQTT registration (the CONNACK's)
_FOREVER = (5001, 6288, 6289, 6600, MQTT_REFUSED)  # answers a retry will not change (until a console fix)
_ANSWER_MS = const(10000)  # the platform's push after CONNACK, or its close
_TOKEN_SUFFIX = "|securemode=-2,authType=connwl|"

ALREADY_ACTIVE_HELP = (
    "device %s/%s is already active: the platform gives a DeviceSecret only once and will not "
    "send it again. Copy the DeviceSecret from the IoT console (device details) into "
    "config.json as \"device_secret\", or reset the device in the console (delete and add it "
    "again) so it may register once more."
)


def _random():
    return "%08x%08x" % (random.getrandbits(32), random.getrandbits(32))  # boards seed it from hardware


REFUSED_HELP = (
    "the platform refused the registration of %s/%s over MQTT (CONNACK not accepted): check "
    "product_secret and sign_method, that dynamic registration is on for the product in the "
    "console (for \"mqtt_nwl\": without pre-registration), and for \"mqtt\" that the device "
    "was added in the console and is not active already (the platform registers a device "
    "once: copy its DeviceSecret from the console into config.json, or reset the device there)"
)


def register(modem, cfg, rnd=None):
    """One registration by the route config's "register" names (bearer open): stores what
    the platform gave and puts it into cfg; CloudError for a refusal (explained in the
    log), ModemError / OSError for the rest."""
    if cfg.get("register", "https") != "https":
        return register_mqtt(modem, cfg, rnd)
    from firmware import auth  # the HTTPS route only

    pk, dn = cfg["product_key"], cfg["device_name"]
    body = auth.register_form(pk, dn, cfg["product_secret"], rnd or _random(), cfg["sign_method"])
    log.info(_TAG, "registering %s/%s (dynamic registration)", pk, dn)
    try:
        data = auth.post_form(modem, cfg, PATH, body)
    except CloudError as e:
        if e.code == _ALREADY_ACTIVE:
            log.error(_TAG, ALREADY_ACTIVE_HELP, pk, dn)
        raise
    ds = data.get("deviceSecret") if isinstance(data, dict) else None
    if not ds or not isinstance(ds, str):
        raise CloudError(200, "%s: reply without deviceSecret" % PATH)
    path = cfg.get("secret_file") or FILE
    save(path, pk, dn, ds)
    cfg["device_secret"] = ds
    log.info(_TAG, "registered: DeviceSecret stored in %s", path)
    return ds


def mqtt_request(cfg, rnd):
    """(client_id, username, password) of the MQTT registration request."""
    from firmware.aliyun import client_id
    from firmware.sign import check_name, check_secret, digest_name, sign_hex

    pk, dn = check_name(cfg["product_key"], "product_key"), check_name(cfg["device_name"], "device_name")
    name = digest_name(cfg["sign_method"])
    nwl = cfg.get("register") == "mqtt_nwl"
    iid = cfg.get("instance_id")
    password = sign_hex(name, check_secret(cfg["product_secret"], "product_secret"),
                        (("deviceName", dn), ("productKey", pk), ("random", rnd)))
    cid = "%s|securemode=%d,authType=%s,random=%s,signmethod=hmac%s%s|" % (
        client_id(cfg), -2 if nwl or iid else 2, "regnwl" if nwl else "register", rnd, name,
        ",instanceId=" + iid if iid else "")
    return cid, dn + "&" + pk, password


def register_mqtt(modem, cfg, rnd=None):
    """Registration over MQTT ("mqtt" / "mqtt_nwl"): connect with the request over TLS, take
    the platform's push (/ext/register or /ext/regnwl), store it; the platform closes."""
    pk, dn = cfg["product_key"], cfg["device_name"]
    nwl = cfg.get("register") == "mqtt_nwl"
    topic = "/ext/regnwl" if nwl else "/ext/register"
    cid, user, password = mqtt_request(cfg, rnd or _random())
    log.info(_TAG, "registering %s/%s over MQTT (%s)", pk, dn, "without pre-registration" if nwl else "pre-registered")
    got = []
    handlers = modem.on_message, modem.on_event
    modem.on_message = lambda t, p: got.append(p) if t == topic else log.warn(_TAG, "unexpected message on %s: ignored", t)
    modem.on_event = lambda name, detail: None  # the close that ends the request is expected
    try:
        modem.mqtt_disconnect()  # whatever the module still holds
        try:  # pushed at once: the answer may come before mqtt_connect's own MQTTMSGSET=0
            modem.at.cmd("AT+MQTTMSGSET=0")
        except ModemError:
            pass
        try:
            modem.mqtt_connect(cid, user, password, aliyun.mqtt_host(cfg), cfg["mqtt_port"], tls=True,
                               keepalive=cfg.get("keepalive", 300))
        except ModemError as e:
            if e.kind == "refused":
                log.error(_TAG, REFUSED_HELP, pk, dn)
                raise CloudError(MQTT_REFUSED, "MQTT registration refused by the platform")
            if e.kind != "link":  # "link": closed right after CONNACK, the answer may be in
                raise
        deadline = ticks_add(ticks_ms(), _ANSWER_MS)
        while not got and modem.mqtt_connected and ticks_diff(deadline, ticks_ms()) > 0:
            modem.sleep(50)
        modem.deliver()
    finally:
        modem.on_message, modem.on_event = handlers
        modem.mqtt_disconnect()
    if not got:
        raise ModemError("no answer on %s before the platform closed the connection" % topic, "cloud")
    return _store(cfg, topic, got[0])


def _store(cfg, topic, payload):
    """Check the pushed answer, store it atomically, put it into cfg."""
    d = aliyun.parse(topic, payload, _TAG)
    if d is None:
        raise CloudError(200, "%s: the answer is not a JSON object" % topic)
    pk, dn = cfg["product_key"], cfg["device_name"]
    if d.get("productKey", pk) != pk or d.get("deviceName", dn) != dn:
        raise CloudError(200, "%s: the answer is for another device" % topic)
    fields = ("clientId", "deviceToken") if topic == "/ext/regnwl" else ("deviceSecret",)
    for f in fields:
        v = d.get(f)
        # they go into AT+MCONFIG's quoted fields (256 bytes), a clientId before "|..."
        if not isinstance(v, str) or not v or len(v) + len(_TOKEN_SUFFIX) > 256 or not _plain(v):
            raise CloudError(200, "%s: %s missing or not usable" % (topic, f))
    path = cfg.get("secret_file") or FILE
    if len(fields) == 1:
        save(path, pk, dn, d["deviceSecret"])
        cfg["device_secret"] = d["deviceSecret"]
        log.info(_TAG, "registered: DeviceSecret stored in %s", path)
        return d["deviceSecret"]
    save(path, pk, dn, None, token=(d["clientId"], d["deviceToken"]))
    cfg["token_client_id"], cfg["device_token"] = d["clientId"], d["deviceToken"]
    log.info(_TAG, "registered: clientId and deviceToken stored in %s", path)
    return d["deviceToken"]


def _plain(v):
    for c in v:  # once, over two short strings
        if c <= " " or c > "~" or c in "\"\\|,":
            return False
    return True


def provision(modem, cfg, until=None):
    """Before the link starts: make sure cfg has a device_secret, registering if needed
    (module up, bearer open). Retries failures (refusals slowly: backoff_refused_ms, after
    the log said what to fix). True when the secret is there; False if until() ended it."""
    if cfg.get("device_secret") or cfg.get("device_token"):
        return True
    delay = 0
    while until is None or not until():
        try:
            modem.start()
            if not aliyun.load_ca(modem, cfg):  # the answer holds the new DeviceSecret
                log.warn(_TAG, "this module cannot verify the registration server's certificate")
            modem.bearer_open(cfg.get("apn"))
            register(modem, cfg)
            return True
        except CloudError as e:
            log.error(_TAG, "registration refused: %s", e)
            wait = cfg.get("backoff_refused_ms", 600000) if e.code in _FOREVER else None
        except Exception as e:  # module, network, flash: try again
            log.error(_TAG, "registration failed: %s", log.err(e))
            wait = None
        if wait is None:
            delay = min(cfg.get("backoff_max_ms", 60000), max(cfg.get("backoff_min_ms", 1000), delay * 2))
            wait = delay
        log.info(_TAG, "next registration attempt in %d s", wait // 1000)
        _wait(modem, wait, until)
    return False


def _wait(modem, ms, until):
    deadline = ticks_add(ticks_ms(), ms)
    while ticks_diff(deadline, ticks_ms()) > 0 and (until is None or not until()):
        try:
            modem.sleep(min(1000, max(0, ticks_diff(deadline, ticks_ms()))))  # feeds the watchdog
        except Exception:
            sleep_ms(100)
