# Hostile config.json input: every bad value gives a ConfigError naming its field (e.field),
# never another exception type, and no message ever holds a secret. Both interpreters: each
# case goes through config.check() and, written to a file, through config.load().
import json
import os

from firmware import config

DS = "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
PS = "ProductSecretNeverShown00000001"
NAN, INF = float("nan"), float("inf")
BOARD = {"id": 1, "tx": 17, "rx": 16}


def uart(**kw):
    u = dict(BOARD)
    u.update(kw)
    return u


# (field the error must name, patch over a good config); None in a patch deletes the key
CASES = [
    ("product_key", {"product_key": None}), ("product_key", {"product_key": ""}),
    ("product_key", {"product_key": 7}), ("product_key", {"product_key": ["a1"]}),
    ("product_key", {"product_key": "a1 b"}), ("product_key", {"product_key": 'a1"'}),
    ("product_key", {"product_key": "a1\u0000"}), ("product_key", {"product_key": "k" * 300}),
    ("device_name", {"device_name": None}), ("device_name", {"device_name": "dev"}),
    ("device_name", {"device_name": "d" * 33}), ("device_name", {"device_name": "dev\r\nAT+RESET"}),
    ("device_name", {"device_name": "dev\\1"}), ("device_name", {"device_name": "dev/1"}),
    ("device_name", {"device_name": "设备名称一"}), ("device_name", {"device_name": {"a": 1}}),
    ("device_name", {"device_name": DS + "\n"}),
    ("device_secret", {"device_secret": None}), ("device_secret", {"device_secret": 12345}),
    ("device_secret", {"device_secret": DS + "\n"}), ("device_secret", {"device_secret": " " + DS}),
    ("device_secret", {"device_secret": DS[:10] + '"' + DS[10:]}), ("device_secret", {"device_secret": [DS]}),
    ("device_secret", {"device_secret": "\ud800" + DS}),
    ("product_secret", {"product_secret": PS + "\x00"}), ("product_secret", {"product_secret": True}),
    ("client_id", {"client_id": "c" * 65}), ("client_id", {"client_id": "a|securemode=3|"}),
    ("client_id", {"client_id": 'a"b'}), ("client_id", {"client_id": "a\nb"}), ("client_id", {"client_id": DS * 3}),
    ("client_id", {"client_id": 42}),
    ("region", {"region": "CN"}), ("region", {"region": "cn_shanghai"}), ("region", {"region": ""}),
    ("region", {"region": "cn-shanghai\x00"}), ("region", {"region": DS}),
    ("mqtt_host", {"mqtt_host": "a b.com"}), ("mqtt_host", {"mqtt_host": "a.com\r\n"}),
    ("mqtt_host", {"mqtt_host": "x" * 254}), ("mqtt_host", {"mqtt_host": 8}),
    ("auth_host", {"auth_host": "evil.com/x?"}), ("auth_host", {"auth_host": '"'}),
    ("apn", {"apn": "cm\"net"}), ("apn", {"apn": "a\\b"}), ("apn", {"apn": "a" * 101}), ("apn", {"apn": 0}),
    ("apn", {"apn": "\t"}),
    ("auth", {"auth": "MQTT"}), ("auth", {"auth": None}), ("auth", {"auth": ["mqtt"]}),
    ("sign_method", {"sign_method": "sha256"}), ("sign_method", {"sign_method": {}}),
    ("tls", {"tls": 1}), ("tls", {"tls": "true"}), ("thing", {"thing": None}), ("ntp", {"ntp": 0}),
    ("keepalive", {"keepalive": 29}), ("keepalive", {"keepalive": 1201}), ("keepalive", {"keepalive": NAN}),
    ("keepalive", {"keepalive": INF}), ("keepalive", {"keepalive": True}), ("keepalive", {"keepalive": "300"}),
    ("keepalive", {"keepalive": 10 ** 30}),
    ("mqtt_port", {"mqtt_port": 0}), ("mqtt_port", {"mqtt_port": 1883.5}),
    ("interval", {"interval": 0}), ("interval", {"interval": -1}), ("interval", {"interval": NAN}),
    ("interval", {"interval": INF}), ("interval", {"interval": -INF}), ("interval", {"interval": 864000}),
    ("interval", {"interval": 1e400}), ("interval", {"interval": None}), ("interval", {"interval": DS}),
    ("qos", {"qos": 2}), ("qos", {"qos": -1}), ("qos", {"qos": False}), ("qos", {"qos": 0.0}),
    ("log_level", {"log_level": "trace"}), ("outbox_policy", {"outbox_policy": 1}),
    ("outbox", {"outbox": 0}), ("outbox", {"outbox": 10 ** 6}),
    ("wdt_ms", {"wdt_ms": -1}), ("wdt_ms", {"wdt_ms": 10 ** 9}), ("wdt_ms", {"wdt_ms": NAN}),
    ("reset_pin", {"reset_pin": -1}), ("reset_pin", {"reset_pin": 4.0}), ("reset_pin", {"reset_pin": False}),
    ("backoff_min_ms", {"backoff_min_ms": 0}), ("backoff_min_ms", {"backoff_min_ms": INF}),
    ("backoff_max_ms", {"backoff_max_ms": 999}), ("backoff_max_ms", {"backoff_max_ms": 2 ** 29}),
    ("backoff_refused_ms", {"backoff_refused_ms": 2 ** 40}), ("status_ms", {"status_ms": -5}),
    ("stats_interval", {"stats_interval": 10 ** 7}), ("stats_interval", {"stats_interval": NAN}),
    ("ntp_interval", {"ntp_interval": "1h"}), ("property_interval", {"property_interval": 1e9}),
    ("uart", {"uart": None}), ("uart", {"uart": "socket://127.0.0.1:7000"}), ("uart", {"uart": [1, 17, 16]}),
    ("uart.rx", {"uart": {"id": 1, "tx": 17}}), ("uart.tx", {"uart": {"id": 1, "rx": 16}}),
    ("uart.id", {"uart": uart(id="1")}), ("uart.id", {"uart": uart(id=-1)}), ("uart.tx", {"uart": uart(tx=True)}),
    ("uart.tx", {"uart": uart(tx=100)}), ("uart.rx", {"uart": uart(rx=17)}),
    ("uart.baud", {"uart": uart(baud=115201)}), ("uart.baud", {"uart": uart(baud=0)}),
    ("uart.baud", {"uart": uart(baud="115200")}), ("uart.baud", {"uart": uart(baud=True)}),
    ("uart.baud", {"uart": uart(baud=INF)}),
    ("uart.rxbuf", {"uart": uart(rxbuf=0)}), ("uart.rxbuf", {"uart": uart(rxbuf=10 ** 6)}),
    ("uart.flow", {"uart": uart(flow=1)}), ("uart.rts", {"uart": uart(rts=18)}),
    ("uart.cts", {"uart": uart(flow=True, cts=16)}), ("uart.baudrate", {"uart": uart(baudrate=9600)}),
    ("uart.url", {"uart": {"url": None}}), ("uart.url", {"uart": {"url": ""}}),
    ("uart.url", {"uart": {"url": "socket://127.0.0.1:99999"}}), ("uart.url", {"uart": {"url": "socket://:1"}}),
    ("uart.url", {"uart": {"url": "socket://127.0.0.1:7000\n"}}), ("uart.url", {"uart": {"url": "tcp:127.0.0.1"}}),
    ("uart.url", {"uart": {"url": "/dev/" + "x" * 300}}), ("uart.url", {"uart": {"url": DS}}),
    ("uart.url", {"uart": {"url": ["socket://127.0.0.1:7000"]}}),
]


def good():
    return {"product_key": "b0FMK1Ga5cp", "device_name": "862991419835241", "device_secret": DS,
            "product_secret": PS}


def patched(patch):
    cfg = good()
    for k, v in patch.items():
        if v is None and k in ("product_key", "device_name", "device_secret"):
            del cfg[k]
            if k == "device_secret":
                del cfg["product_secret"]
        else:
            cfg[k] = v
    return cfg


def no_secret(e, what):
    for text in (str(e), repr(e)) + tuple(str(a) for a in e.args):
        for s in (DS, PS):
            assert s not in text and s[:16] not in text, (what, text)


def outcome(fn, *args):
    """The exception fn(*args) raised, or None."""
    try:
        fn(*args)
    except Exception as e:  # any type: the test says which it must be
        return e
    return None


def test_every_hostile_value_is_refused_naming_its_field():
    bad = []
    for field, patch in CASES:
        e = outcome(config.check, patched(patch))
        if not isinstance(e, config.ConfigError) or e.field != field or (": %s: " % field) not in str(e):
            bad.append((field, patch, type(e).__name__, str(e)))
            continue
        no_secret(e, patch)
    assert not bad, bad


def test_the_same_values_from_a_file():
    skip = (NAN, INF, -INF, 1e400)  # not writable as strict JSON: json.dumps gives NaN/Infinity
    name = "_hostile_config.json"
    bad = []
    try:
        for field, patch in CASES:
            cfg = patched(patch)
            if any(isinstance(v, float) and (v != v or v in skip) for v in cfg.values()):
                continue
            if isinstance(cfg.get("uart"), dict) and any(isinstance(v, float) for v in cfg["uart"].values()):
                continue
            with open(name, "w") as f:
                f.write(json.dumps(cfg))
            e = outcome(config.load, name)
            if not isinstance(e, config.ConfigError) or e.field != field:
                bad.append((field, patch, type(e).__name__, str(e)))
                continue
            no_secret(e, patch)
    finally:
        if name in os.listdir("."):
            os.remove(name)
    assert not bad, bad


def test_hostile_files():
    text = json.dumps(good())
    files = [
        text.encode()[:-1] + b"\xff}",  # a stray byte
        b"\xef\xbb\xbf" + text.encode()[:-1] + b", \"apn\": \"\xc0\xaf\"}",  # an overlong '/'
        text.encode().replace(b"}", b", \"a\": %s}" % (b"[" * 2000 + b"]" * 2000)),
        text.encode().replace(b"}", b", \"x\": \"%s\"}" % (b"y" * 9000)),
        text.encode().replace(b", ", b" "),  # no commas
        text.encode().replace(b":", b""),  # no colons
        text.encode() + b"garbage", text.encode()[:-1], b"", b"null", b"\"" + DS.encode() + b"\"", b"{" * 10,
        text.encode().replace(b"}", b", \"interval\": 1e999999}"),  # parses to inf
        text.encode().replace(DS.encode(), DS.encode() + b"\" \"x"),  # the secret split by quotes
        text.encode().replace(b"{", b"{\"device_secret\": \"y\","),  # given twice
    ]
    name = "_hostile_config.json"
    bad = []
    try:
        for data in files:
            with open(name, "wb") as f:
                f.write(data)
            e = outcome(config.load, name)
            if not isinstance(e, config.ConfigError):
                bad.append((data[:40], type(e).__name__, str(e)[:200]))
                continue
            no_secret(e, data[:40])
    finally:
        if name in os.listdir("."):
            os.remove(name)
    assert not bad, bad
