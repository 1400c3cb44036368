# config.json: read it, fill in defaults, check every field, and say which one is wrong.
# On a board the file lives in the flash root; on a PC, in the current directory.
# The device secret never appears in an error, a log line or masked().
import json

from firmware.sign import METHODS

PATH = "config.json"
SECRETS = ("device_secret", "product_secret")

DEFAULTS = {
    "region": "cn-shanghai",
    "auth": "mqtt",  # "mqtt": direct sign; "http": token from /auth/devicename
    "sign_method": "hmacsha256",
    "client_id": None,  # default "{product_key}.{device_name}"
    "tls": True,
    "keepalive": 300,
    "apn": "CMIIOT",
    "mqtt_host": None,  # default "{product_key}.iot-as-mqtt.{region}.aliyuncs.com"
    "mqtt_port": 1883,
    "auth_host": None,  # default "iot-auth.{region}.aliyuncs.com"
    "interval": 10,  # seconds between telemetry messages
    "qos": 1,  # telemetry QoS (0 or 1)
    "log_level": "info",
    "uart": {"id": 1, "tx": 17, "rx": 16, "baud": 115200},
    "wdt_ms": 0,  # 0: no watchdog; else machine.WDT with this timeout
    "reset_pin": None,  # GPIO wired to the module's reset/power key, if any
    "outbox": 20,  # QoS 1 messages kept while the link is down
    "outbox_policy": "drop_oldest",  # or "refuse_new"
    "backoff_min_ms": 1000,  # first retry after a failure (then doubling, with jitter)
    "backoff_max_ms": 60000,  # cap of the retry backoff
    "backoff_refused_ms": 600000,  # retry after refused credentials (not hammered)
    "status_ms": 0,  # AT+MQTTSTATU after this long without traffic (0: keepalive / 2)
    "stats_interval": 600,  # seconds between "link: stats {...}" log lines (0: never)
    "thing": False,  # thing model (Alink JSON properties, events, services): loaded only when on
    "ntp": True,  # time over MQTT (/ext/ntp): telemetry gets a real "ts"
    "ntp_interval": 3600,  # seconds between NTP syncs over MQTT (also on every connect; 0: only then)
    "property_interval": 60,  # seconds between thing-model property posts (also on connect; 0: only then)
}


class ConfigError(ValueError):
    pass


def _fail(path, field, why):
    raise ConfigError("%s: %s: %s" % (path, field, why))


def _str(cfg, path, field, required=False):
    v = cfg.get(field)
    if v is None:
        if required:
            _fail(path, field, "missing (required)")
        return
    if not isinstance(v, str) or not v:
        _fail(path, field, "must be a non-empty string")
    for bad in ('"', "\r", "\n", "|", "&"):
        if bad in v and field not in SECRETS:
            _fail(path, field, "must not contain %r" % bad)


def _int(cfg, path, field, lo, hi):
    v = cfg.get(field)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        _fail(path, field, "%r is not a whole number in %d..%d" % (v, lo, hi))


def check(cfg, path=PATH):
    """Fill defaults into `cfg` (a dict from JSON) and validate it; return it."""
    if not isinstance(cfg, dict):
        raise ConfigError("%s: must hold a JSON object" % path)
    for k, v in DEFAULTS.items():
        if k not in cfg:
            cfg[k] = dict(v) if isinstance(v, dict) else v
    _str(cfg, path, "product_key", True)
    _str(cfg, path, "device_name", True)
    if cfg.get("device_secret") is None and cfg.get("product_secret") is None:
        _fail(path, "device_secret", "missing (or give product_secret for dynamic registration)")
    for f in SECRETS + ("region", "mqtt_host", "auth_host", "apn"):
        if f == "apn" and cfg.get(f) == "":
            continue  # empty APN: the network's default
        _str(cfg, path, f)
    cid = cfg.get("client_id")
    if cid is not None and (not isinstance(cid, str) or not cid or len(cid) > 64 or "|" in cid or '"' in cid):
        _fail(path, "client_id", "must be 1..64 characters without '|' or '\"'")
    if cfg["auth"] not in ("mqtt", "http"):
        _fail(path, "auth", "%r is not \"mqtt\" or \"http\"" % (cfg["auth"],))
    if cfg["sign_method"] not in METHODS:
        _fail(path, "sign_method", "%r is not one of %s" % (cfg["sign_method"], ", ".join(METHODS)))
    for f in ("tls", "thing", "ntp"):
        if not isinstance(cfg[f], bool):
            _fail(path, f, "must be true or false")
    _int(cfg, path, "keepalive", 30, 1200)
    _int(cfg, path, "mqtt_port", 1, 65535)
    _int(cfg, path, "wdt_ms", 0, 600000)
    _int(cfg, path, "outbox", 1, 1000)
    _int(cfg, path, "backoff_min_ms", 10, 3600000)
    _int(cfg, path, "backoff_max_ms", cfg["backoff_min_ms"], 3600000)
    _int(cfg, path, "backoff_refused_ms", 10, 86400000)
    _int(cfg, path, "status_ms", 0, 3600000)
    si = cfg["stats_interval"]
    if not isinstance(si, (int, float)) or isinstance(si, bool) or si < 0:
        _fail(path, "stats_interval", "%r is not a number of seconds >= 0" % (si,))
    for f in ("ntp_interval", "property_interval"):
        v = cfg[f]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 86400:
            _fail(path, f, "%r is not a number of seconds in 0..86400" % (v,))
    if cfg["outbox_policy"] not in ("drop_oldest", "refuse_new"):
        _fail(path, "outbox_policy", "%r is not \"drop_oldest\" or \"refuse_new\"" % (cfg["outbox_policy"],))
    if cfg["qos"] not in (0, 1) or isinstance(cfg["qos"], bool):
        _fail(path, "qos", "%r is not 0 or 1" % (cfg["qos"],))
    iv = cfg["interval"]
    if not isinstance(iv, (int, float)) or isinstance(iv, bool) or iv <= 0:
        _fail(path, "interval", "%r is not a positive number of seconds" % (iv,))
    if cfg["log_level"] not in ("debug", "info", "warn", "error"):
        _fail(path, "log_level", "%r is not debug, info, warn or error" % (cfg["log_level"],))
    rp = cfg["reset_pin"]
    if rp is not None and (not isinstance(rp, int) or isinstance(rp, bool)):
        _fail(path, "reset_pin", "must be a GPIO number or null")
    _check_uart(cfg["uart"], path)
    return cfg


def _check_uart(u, path):
    if not isinstance(u, dict):
        _fail(path, "uart", "must be an object")
    if "url" in u:
        if not isinstance(u["url"], str) or not u["url"]:
            _fail(path, "uart.url", "must be a string such as \"socket://127.0.0.1:7000\"")
        return
    for f in ("id", "tx", "rx"):
        v = u.get(f)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            _fail(path, "uart." + f, "%r is not a pin/port number" % (v,))
    b = u.get("baud", 115200)
    if not isinstance(b, int) or isinstance(b, bool) or not 1200 <= b <= 921600:
        _fail(path, "uart.baud", "%r is not a baud rate in 1200..921600" % (b,))


def load(path=PATH):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("%s: not found: copy config.example.json to %s and fill in your device" % (path, path))
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError("%s: not valid JSON (%s)" % (path, e))
    cfg = check(cfg, path)
    if not cfg.get("device_secret"):  # only product_secret: the one from registering, if stored
        from firmware import register

        register.merge(cfg, path)
    return cfg


def masked(cfg):
    """A copy safe to print: secrets replaced by ****."""
    out = dict(cfg)
    for f in SECRETS:
        if out.get(f):
            out[f] = "****"
    return out
