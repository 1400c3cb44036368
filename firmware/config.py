# config.json: read it, fill in defaults, check every field, and say which one is wrong.
# On a board the file lives in the flash root; on a PC, in the current directory.
# Every error is one ConfigError naming the field (also as e.field), the value and what is
# allowed; a secret's value is never shown (not in an error, a log line or masked()).
# What is checked here, at the door, and not at every connect:
#   - strings the module takes literally: no quote, backslash or control character, and
#     AT+MCONFIG's fields hold 256 bytes; Aliyun's rules for names (DeviceName 4..32 of
#     letters, digits and -_@.: (RegisterDevice API), clientId at most 64 characters);
#   - numbers: finite, whole where a whole number is needed (true/false is not a number),
#     and every time the firmware adds to the board's ticks below 2**29 ms (ticks_add
#     raises OverflowError at 2**29 on rp2 and esp32: about 6.2 days);
#   - the file: UTF-8, JSON (MicroPython's json.loads lets a missing ',' or ':' and a
#     trailing ',' pass: _strict() counts them), not nested deeper than a config is.
import json
import sys

from firmware.port import TICKS_MAX_MS, const
from firmware.aliyun import SIGN_METHODS

PATH = "config.json"
SECRETS = ("device_secret", "product_secret", "device_token", "token_client_id")  # the last two: stored by "mqtt_nwl"
PLATFORM = sys.platform  # "rp2" or "esp32" on a board: their own limits apply (tests set it)

_MAX_BYTES = const(8192)  # a config is about 1 KB; the board reads it whole
_DEPTH = const(4)  # a config nests 2 deep (the uart object)
_AT_FIELD = const(256)  # AT+MCONFIG: each field at most 256 bytes
_MAX_S = TICKS_MAX_MS // 1000  # seconds the firmware can add to ticks: 536870 (6.2 days)
# Rates the Air724UG/Air780E take (AT+IPR, and the LuatOS uart.setup() list for the same
# modules): the standard ones from 1200 to 921600. Above 115200 the module's autobaud
# (AT+IPR=0, its default) may not train: set AT+IPR first.
_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
_UART = ("url", "id", "tx", "rx", "baud", "rxbuf", "flow", "rts", "cts")

DEFAULTS = {
    "region": "cn-shanghai",
    "auth": "mqtt",  # "mqtt": direct sign; "http": token from /auth/devicename
    "register": "https",  # dynamic registration (product_secret): "https", "mqtt" or "mqtt_nwl"
    "sign_method": "hmacsha256",
    "client_id": None,  # default "{product_key}.{device_name}"
    "tls": True,
    "tls_verify": True,  # the module checks the server's certificate, where it can (Air780)
    # the CAs it checks with (PEM on the board's flash); null: the bundled aliyun-ca.pem
    # beside the firmware (the Aliyun IoT Root CA and the GlobalSign Root CA, the pair
    # Aliyun's own Python device SDK pins for its brokers)
    "ca": None,
    "keepalive": 300,
    "apn": "CMIIOT",
    "instance_id": None,  # an instance's ID (the console's instance page): its own hosts
    "mqtt_host": None,  # default "{instance_id}.mqtt.iothub.aliyuncs.com" or "{product_key}.iot-as-mqtt.{region}.aliyuncs.com"
    "mqtt_port": 1883,
    "auth_host": None,  # default "{instance_id}.auth.iothub.aliyuncs.com" or "iot-auth.{region}.aliyuncs.com"
    "interval": 10,  # seconds between telemetry messages
    "qos": 1,  # telemetry QoS (0 or 1)
    "log_level": "info",
    "uart": {"id": 1, "tx": 17, "rx": 16, "baud": 115200},
    "wdt_ms": 0,  # 0: no watchdog; else machine.WDT with this timeout
    "reset_pin": None,  # GPIO wired to the module's reset/power key, if any
    "outbox": 20,  # QoS 1 messages kept while the link is down
    "outbox_policy": "drop_oldest",  # or "refuse_new"
    "outbox_persist": False,  # true: the outbox is also a journal on flash, kept across reboots
    "outbox_dir": None,  # its folder; null: "outbox" beside config.json
    "backoff_min_ms": 1000,  # first retry after a failure (then doubling, with jitter)
    "backoff_max_ms": 60000,  # cap of the retry backoff
    "backoff_refused_ms": 600000,  # retry after refused credentials (not hammered)
    "status_ms": 0,  # AT+MQTTSTATU after this long without traffic (0: keepalive / 2)
    "stats_interval": 600,  # seconds between "link: stats {...}" log lines (0: never)
    "thing": False,  # thing model (Alink JSON properties, events, services): loaded only when on
    "ntp": True,  # time over MQTT (/ext/ntp): telemetry gets a real "ts"
    "ntp_interval": 3600,  # seconds between NTP syncs over MQTT (also on every connect; 0: only then)
    "property_interval": 60,  # seconds between thing-model property posts (also on connect; 0: only then)
    "ota": True,  # take update jobs from /ota/device/upgrade (docs/ota.md)
    "ota_boots": 3,  # boots a new firmware gets to reach "connected" before it is rolled back
    "ota_trial_s": 600,  # seconds a new firmware may stay unconnected before it resets the board
}

_secrets = ()  # the secrets of the config being checked: never shown by _show()


class ConfigError(ValueError):
    """One line: "<file>: <field>: what is wrong and what is allowed". `field` is the
    field's name ("uart.baud"), or None when the file as a whole is wrong."""

    def __init__(self, msg, field=None):
        super().__init__(msg)
        self.field = field


def _fail(path, field, why):
    raise ConfigError("%s: %s: %s" % (path, field, why), field)


def _show(v):
    """A value for an error: its repr, cut short, and never one that holds a secret."""
    r = repr(v)
    for s in _secrets:
        if s in r or (isinstance(v, str) and s in v):
            return "(a value holding a secret, not shown)"
    return r if len(r) <= 40 else r[:36] + "...'"


def _bad_char(v, extra):
    """The first character of `v` that is not an ASCII letter, digit or in `extra`; with
    extra=None, the first that is not printable ASCII or is a quote or backslash."""
    for c in v:  # at load only, over a few short strings
        if extra is None:
            if c < " " or c > "~" or c in "\"\\":
                return c
        elif not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in extra):
            return c
    return None


def _text(cfg, path, field, lo, hi, extra, allowed, required=False):
    """A string field: `lo`..`hi` characters of letters, digits and `extra` (None: printable
    ASCII but quote and backslash), described to the user as `allowed`."""
    v = cfg.get(field)
    if v is None:
        if required:
            _fail(path, field, "missing (required)")
        return None
    if not isinstance(v, str) or not v:
        _fail(path, field, "%s is not a non-empty string (%s)" % (_show(v), allowed))
    c = _bad_char(v, extra)
    if c is not None:
        _fail(path, field, "%s holds %s, which it cannot (%s)" % (_show(v), repr(c), allowed))
    if not lo <= len(v) <= hi:
        _fail(path, field, "%s is %d characters, not %d..%d (%s)" % (_show(v), len(v), lo, hi, allowed))
    return v


def _num(d, path, field, lo, hi, whole=True, why="", key=None):
    """d[key or field]: a number in lo..hi (whole: an int); true/false is not a number."""
    v = d.get(key or field)
    if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)) or not lo <= v <= hi:
        _fail(path, field, "%s is not a %s in %s..%s%s" % (_show(v), "whole number" if whole else "number", lo, hi, why))
    return v


def _one_of(cfg, path, field, choices):
    v = cfg.get(field)
    if not isinstance(v, str) or v not in choices:
        _fail(path, field, "%s is not one of %s" % (_show(v), ", ".join(choices)))


def _host(cfg, path, field):
    # 253: DNS's limit, which also keeps https://{auth_host}/auth/register/device inside the
    # 500 characters of AT+HTTPPARA="URL" and AT+MIPSTART's host inside its quotes
    v = _text(cfg, path, field, 1, 253, "-.", "a host name: letters, digits, '-' and '.'")
    if v is not None and (v[0] in "-." or v[-1] in "-." or ".." in v):
        _fail(path, field, "%s is not a host name" % _show(v))


def _instance(cfg, path):
    # the first label of {instance_id}.mqtt.iothub.aliyuncs.com: a DNS label (RFC 1035, 63)
    v = cfg.get("instance_id")
    if isinstance(v, str) and "_" in v:
        _fail(path, "instance_id", "%s is not a host name label: an ID with '_' (iot_instc_pu_...) is a previous "
              "public instance, which has no hosts of its own: leave instance_id out" % _show(v))
    v = _text(cfg, path, "instance_id", 1, 63, "-", "the instance ID the console shows, such as iot-06z00ax1o4qq2ly")
    if v is not None and (v[0] == "-" or v[-1] == "-"):
        _fail(path, "instance_id", "%s is not an instance ID such as iot-06z00ax1o4qq2ly ('-' at an end)" % _show(v))


def _pin(path, field, v):
    """A GPIO number the board has (machine.Pin(n) with no mode only looks the pin up)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 48:
        _fail(path, field, "%s is not a GPIO number (0..48)" % _show(v))
    try:
        from machine import Pin  # pyright: ignore[reportMissingImports]
    except ImportError:  # a PC: no pins to ask
        return
    try:
        Pin(v)
        ok = True
    except (ValueError, TypeError):
        ok = False
    if not ok:
        _fail(path, field, "%d is not a pin this board has" % v)


def check(cfg, path=PATH):
    """Fill defaults into `cfg` (a dict from JSON) and validate it; return it."""
    global _secrets
    if not isinstance(cfg, dict):
        raise ConfigError("%s: must hold a JSON object ({...})" % path)
    _secrets = tuple(s for s in (cfg.get(f) for f in SECRETS) if isinstance(s, str) and len(s) >= 4)
    err = None
    try:
        _check(cfg, path)
    except ConfigError as e:
        err = e
    finally:
        secrets, _secrets = _secrets, ()
    if err is None:
        return cfg
    msg = str(err)
    for s in secrets:  # a last guard: no message carries a secret, whole
        msg = msg.replace(s, "****")
    raise ConfigError(msg, err.field)  # raised here, not in the except: nothing chained


def _check(cfg, path):
    for k, v in DEFAULTS.items():
        if k not in cfg:
            cfg[k] = dict(v) if isinstance(v, dict) else v
    pk = _text(cfg, path, "product_key", 1, _AT_FIELD, "", "letters and digits, as the console shows it", True) or ""
    dn = _text(cfg, path, "device_name", 4, 32, "-_@.:", "Aliyun's DeviceName: 4..32 letters, digits and -_@.:", True) or ""
    if len(dn) + 1 + len(pk) > _AT_FIELD:
        _fail(path, "product_key", "the MQTT username device_name&product_key would be %d bytes, over the module's "
              "%d-byte AT+MCONFIG field" % (len(dn) + 1 + len(pk), _AT_FIELD))
    for f in SECRETS:
        v = cfg.get(f)
        if v is not None and (not isinstance(v, str) or not v or _bad_char(v, None) or " " in v or "'" in v):
            _fail(path, f, "must be the secret from the console as text: printable ASCII without spaces or quotes "
                  "(not shown here)")
    if not cfg.get("device_secret") and not cfg.get("product_secret"):
        _fail(path, "device_secret", "missing (or give product_secret for dynamic registration)")
    _text(cfg, path, "client_id", 1, 64, None, "Aliyun's clientId: 1..64 printable ASCII characters")
    if "|" in (cfg["client_id"] or ""):
        _fail(path, "client_id", "%s holds '|', which ends the clientId's id part" % _show(cfg["client_id"]))
    r = _text(cfg, path, "region", 2, 32, "-", "a region such as cn-shanghai", True) or ""
    if r != r.lower() or not r[0].isalpha():
        _fail(path, "region", "%s is not a region such as cn-shanghai (lower case)" % _show(r))
    _instance(cfg, path)
    _host(cfg, path, "mqtt_host")
    _host(cfg, path, "auth_host")
    if cfg["apn"] != "":  # "": the network's default
        _text(cfg, path, "apn", 1, 100, None, "printable ASCII, at most 100 characters (3GPP), or \"\"")
    _one_of(cfg, path, "auth", ("mqtt", "http"))
    _one_of(cfg, path, "register", ("https", "mqtt", "mqtt_nwl"))
    if cfg["register"] == "mqtt_nwl" and (cfg["auth"] != "mqtt" or cfg["tls"] is not True):
        _fail(path, "register", "\"mqtt_nwl\" connects with the platform's deviceToken over MQTT and TLS only: "
              "needs \"auth\": \"mqtt\" and \"tls\": true")
    _one_of(cfg, path, "sign_method", SIGN_METHODS)
    _one_of(cfg, path, "outbox_policy", ("drop_oldest", "refuse_new"))
    _one_of(cfg, path, "log_level", ("debug", "info", "warn", "error"))
    for f in ("tls", "tls_verify", "thing", "ntp", "outbox_persist", "ota"):
        if not isinstance(cfg[f], bool):
            _fail(path, f, "%s is not true or false" % _show(cfg[f]))
    _num(cfg, path, "keepalive", 30, 1200, why=" (seconds: the platform's range)")
    _num(cfg, path, "mqtt_port", 1, 65535)
    _num(cfg, path, "qos", 0, 1, why=" (Aliyun takes QoS 0 and 1)")
    _num(cfg, path, "outbox", 1, 1000, why=" (messages kept in RAM)")
    d = _text(cfg, path, "outbox_dir", 1, 128, "/-_.", "a folder: letters, digits and /-_.")
    if d is None:
        cfg["outbox_dir"] = path[: path.rfind("/") + 1] + "outbox"  # beside config.json, as secret.json
    elif d.rstrip("/") in ("", ".", ".."):
        _fail(path, "outbox_dir", "%s is not a folder of its own" % _show(d))
    _num(cfg, path, "interval", 0.01, _MAX_S, False,
         " (seconds: the main loop ticks every 5 ms; a board's clock waits at most 6.2 days)")
    for f in ("stats_interval", "ntp_interval", "property_interval"):
        _num(cfg, path, f, 0, 86400, False, " (seconds, 0: off)")
    _num(cfg, path, "backoff_min_ms", 10, 3600000)
    _num(cfg, path, "backoff_max_ms", cfg["backoff_min_ms"], 3600000, why=" (from backoff_min_ms)")
    _num(cfg, path, "backoff_refused_ms", 10, 86400000)
    _num(cfg, path, "status_ms", 0, 3600000)
    _num(cfg, path, "ota_boots", 1, 20, why=" (boots before a rollback)")
    _num(cfg, path, "ota_trial_s", 30, _MAX_S, why=" (seconds)")
    wdt = 600000
    if PLATFORM == "rp2":  # machine.WDT's limit: the 24-bit counter
        wdt = 16777 if "2350" in getattr(sys.implementation, "_machine", "") else 8388
    w = cfg["wdt_ms"]
    if isinstance(w, bool) or not isinstance(w, int) or w != 0:
        _num(cfg, path, "wdt_ms", 1000, wdt, why=" ms, or 0 for no watchdog")
    if cfg["reset_pin"] is not None:
        _pin(path, "reset_pin", cfg["reset_pin"])
    _check_uart(cfg["uart"], path)
    if cfg["tls_verify"]:  # MQTT over TLS, and HTTPS (auth, registration) whatever "tls" says
        _check_ca(cfg, path)


def _bundled_ca():
    """firmware/aliyun-ca.pem where the firmware itself was loaded from (a board's flash
    root, or the repository on a PC whatever the current directory)."""
    import firmware

    here = getattr(firmware, "__file__", None) or "firmware/__init__.py"
    return here[: here.rfind("/") + 1] + "aliyun-ca.pem"


def _check_ca(cfg, path):
    """The CA file the module will verify the server with: there, PEM, small enough for the
    module's file system (read now so that a wrong path is said at start-up, not at every
    connect)."""
    if cfg["ca"] is None:
        cfg["ca"] = _bundled_ca()
    _text(cfg, path, "ca", 1, 255, None, "a file on the board's flash, e.g. firmware/aliyun-ca.pem")
    pem = b""
    try:
        with open(cfg["ca"], "rb") as f:
            pem = f.read(16385)
    except OSError:
        _fail(path, "ca", "%s cannot be read: copy the PEM file to the board (make deploy does "
                          "firmware/aliyun-ca.pem) or set tls_verify to false" % _show(cfg["ca"]))
    if len(pem) > 16384 or b"-----BEGIN CERTIFICATE-----" not in pem:
        _fail(path, "ca", "%s is not a PEM certificate file of at most 16 KB" % _show(cfg["ca"]))


def _check_uart(u, path):
    if not isinstance(u, dict):
        _fail(path, "uart", "%s is not an object such as {\"id\": 1, \"tx\": 17, \"rx\": 16}" % _show(u))
    for k in u:
        if k not in _UART:
            _fail(path, "uart.%s" % k, "unknown field (the uart fields: %s)" % ", ".join(_UART))
    b = u.get("baud", 115200)
    if isinstance(b, bool) or not isinstance(b, int) or b not in _BAUDS:
        _fail(path, "uart.baud", "%s is not a rate the module takes (1200..921600: %s)" % (
            _show(b), ", ".join(str(x) for x in _BAUDS)))
    flow = u.get("flow", False)
    if not isinstance(flow, bool):
        _fail(path, "uart.flow", "%s is not true (RTS/CTS) or false" % _show(flow))
    if "url" in u:
        _check_url(u["url"], path)
        return
    _num(u, path, "uart.id", 0, 2, key="id")  # rp2: 0, 1; esp32: 0..2 (machine.UART says which)
    used = {}
    for f in ("tx", "rx", "rts", "cts"):
        if f not in u:
            if f in ("tx", "rx"):
                _fail(path, "uart." + f, "missing (the GPIO wired to the module's %s)" % ("RXD" if f == "tx" else "TXD"))
            continue
        _pin(path, "uart." + f, u[f])
        if u[f] in used:
            _fail(path, "uart." + f, "%d is uart.%s already" % (u[f], used[u[f]]))
        used[u[f]] = f
        if f in ("rts", "cts") and not flow:
            _fail(path, "uart." + f, "given, but uart.flow is not true (RTS/CTS are used only with \"flow\": true)")
    if flow and PLATFORM == "esp32" and not ("rts" in u and "cts" in u):
        _fail(path, "uart.rts" if "rts" not in u else "uart.cts",
              "needed with \"flow\": true on ESP32 (its default RTS/CTS pins are not wired out)")
    if "rxbuf" in u:
        _num(u, path, "uart.rxbuf", 256, 32766, why=" bytes (256: the boards' default; 32766: rp2's most)", key="rxbuf")


def _check_url(url, path):
    if not isinstance(url, str) or not url or _bad_char(url, None) or len(url) > 256:
        _fail(path, "uart.url", "%s is not a string such as \"socket://127.0.0.1:7000\" or \"/dev/ttyUSB0\"" % _show(url))
    if url.startswith("socket://"):
        host, sep, port = url[9:].rpartition(":")
        if not sep or not host or _bad_char(host, "-.") or not port.isdigit() or not 1 <= int(port) <= 65535:
            _fail(path, "uart.url", "%s is not socket://host:port (a host name or address, a port in 1..65535)" % _show(url))
    elif not (url[0] == "/" or (url[:3].upper() == "COM" and url[3:].isdigit()) or "://" in url):
        hint = ""
        if url.rpartition(":")[2].isdigit():
            hint = " (did you mean \"socket://%s\"?)" % url
        _fail(path, "uart.url", "%s is neither socket://host:port nor a serial device such as /dev/ttyUSB0 or COM3%s" % (
            _show(url), hint))


def _read(path):
    """The file's text, or a ConfigError that shows none of it."""
    import os

    raw = size = None
    try:
        size = os.stat(path)[6]  # checked before the file is read into RAM
        if size <= _MAX_BYTES:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError:
        pass
    if size is None:
        raise ConfigError("%s: not found: copy config.example.json to %s and fill in your device" % (path, path))
    if size > _MAX_BYTES:
        raise ConfigError("%s: larger than %d bytes: not a config file (one is about 1 KB)" % (path, _MAX_BYTES))
    if raw is None:
        raise ConfigError("%s: cannot be read (a directory? its permissions?)" % path)
    try:
        text = raw.decode()
    except UnicodeError:  # its repr would hold every byte of the file
        text = None
    if text is None:
        raise ConfigError("%s: not UTF-8 text: save it as UTF-8 (an editor may have used GBK or Latin-1)" % path)
    return text[1:] if text[:1] == "\ufeff" else text  # a BOM (Windows Notepad)


def _count(v, n, depth, path):
    """Add up what a strict JSON text of `v` holds: [containers, keys, commas, strings, scalars]."""
    if depth > _DEPTH:
        raise ConfigError("%s: nested deeper than %d levels: not a config (it nests 2)" % (path, _DEPTH))
    if isinstance(v, (dict, list)):
        n[0] += 1
        n[2] += max(len(v) - 1, 0)
        if isinstance(v, dict):
            n[1] += len(v)
            n[3] += len(v)
            v = v.values()
        for x in v:
            _count(x, n, depth + 1, path)
    elif isinstance(v, str):
        n[3] += 1
    else:
        n[4] += 1


def _strict(text, cfg, path):
    """MicroPython's json.loads lets `{"a" 1 "b":2,}` pass: compare the commas, colons,
    brackets, quotes and bare values outside the strings with what the parsed value needs.
    That also catches trailing data and a field given twice (one of them was dropped)."""
    n = [0, 0, 0, 0, 0]
    _count(cfg, n, 1, path)
    parts = text.replace("\\\\", "").replace('\\"', "").split('"')
    out = " ".join(parts[0::2])
    for c in "{}[],:":
        out = out.replace(c, " " + c + " ")
    words = out.split()
    bare = [w for w in words if w not in ("{", "}", "[", "]", ",", ":")]
    ok = len(parts) % 2 == 1 and (len(parts) - 1) // 2 == n[3] and len(bare) == n[4]
    ok = ok and words.count("{") + words.count("[") == n[0] == words.count("}") + words.count("]")
    ok = ok and words.count(":") == n[1] and words.count(",") == n[2]
    for w in bare:  # JSON's literals and numbers: no NaN, Infinity, bare words or 1.
        if not ok or w in ("true", "false", "null"):
            continue
        ok = w[0] in "-0123456789" and w[-1] in "0123456789"
    if not ok:
        raise ConfigError("%s: not valid JSON: a missing or extra ',' or ':', text without quotes, trailing data "
                          "or a field given twice (check it on a PC: python3 -m json.tool %s)" % (path, path))


def load(path=PATH):
    text = _read(path)
    cfg = why = None
    try:
        cfg = json.loads(text)
    except ValueError as e:  # CPython says where ("line 3 column 5"); MicroPython does not
        why = str(e) if "line " in str(e) else "syntax error"
    except (RuntimeError, MemoryError):  # RecursionError (CPython), or a board out of RAM
        why = "nested too deep"
    if why is not None:
        raise ConfigError("%s: not valid JSON (%s; check it on a PC: python3 -m json.tool %s)" % (path, why, path))
    if not isinstance(cfg, dict):
        raise ConfigError("%s: must hold a JSON object ({...})" % path)
    _strict(text, cfg, path)
    cfg = check(cfg, path)
    if not cfg.get("device_secret"):  # only product_secret: the one from registering, if stored
        from firmware.secret import merge

        merge(cfg, path)
    return cfg


def masked(cfg):
    """A copy safe to print: secrets replaced by ****."""
    out = dict(cfg)
    for f in SECRETS:
        if out.get(f):
            out[f] = "****"
    return out
