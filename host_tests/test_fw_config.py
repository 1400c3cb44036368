# config.json checking: defaults, one clear error per bad field, secrets never shown.
from fwtest import raises

from firmware import config

SECRET = "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"


def base(**kw):
    cfg = {"product_key": "b0FMK1Ga5cp", "device_name": "862991419835241", "device_secret": SECRET}
    cfg.update(kw)
    return cfg


def test_defaults_filled_in():
    cfg = config.check(base())
    assert cfg["auth"] == "mqtt" and cfg["tls"] is True and cfg["keepalive"] == 300
    assert cfg["region"] == "cn-shanghai" and cfg["apn"] == "CMIIOT" and cfg["qos"] == 1
    assert cfg["uart"] == {"id": 1, "tx": 17, "rx": 16, "baud": 115200}


def test_defaults_are_not_shared_between_configs():
    a = config.check(base())
    a["uart"]["baud"] = 9600
    assert config.check(base())["uart"]["baud"] == 115200


def test_each_bad_field_is_named():
    cases = [
        ({"keepalive": 20}, "keepalive"),
        ({"keepalive": 1201}, "keepalive"),
        ({"keepalive": "300"}, "keepalive"),
        ({"auth": "token"}, "auth"),
        ({"sign_method": "sha256"}, "sign_method"),
        ({"tls": "yes"}, "tls"),
        ({"interval": 0}, "interval"),
        ({"qos": 2}, "qos"),
        ({"device_name": 'a"b'}, "device_name"),
        ({"product_key": ""}, "product_key"),
        ({"client_id": "x" * 65}, "client_id"),
        ({"uart": {"id": 1, "tx": 17}}, "uart.rx"),
        ({"uart": {"id": 1, "tx": 17, "rx": 16, "baud": 7}}, "uart.baud"),
        ({"uart": {"url": ""}}, "uart.url"),
        ({"outbox_policy": "keep"}, "outbox_policy"),
        ({"log_level": "loud"}, "log_level"),
    ]
    for patch, field in cases:
        e = raises(config.ConfigError, config.check, base(**patch))
        assert (": %s: " % field) in str(e), (field, str(e))


def test_missing_triple_fields():
    cfg = base()
    del cfg["device_secret"]
    assert "device_secret" in str(raises(config.ConfigError, config.check, cfg))
    cfg = base()
    del cfg["product_key"]
    assert "product_key: missing" in str(raises(config.ConfigError, config.check, cfg))


def test_secret_never_in_errors_or_masked_copy():
    e = raises(config.ConfigError, config.check, base(device_secret=7))
    assert "device_secret" in str(e)
    cfg = config.check(base())
    m = config.masked(cfg)
    assert m["device_secret"] == "****" and SECRET not in repr(m)
    assert cfg["device_secret"] == SECRET


def test_socket_uart_and_empty_apn_accepted():
    cfg = config.check(base(uart={"url": "socket://127.0.0.1:7000"}, apn=""))
    assert cfg["uart"]["url"] == "socket://127.0.0.1:7000" and cfg["apn"] == ""


def test_load_missing_file_and_bad_json():
    e = raises(config.ConfigError, config.load, "no-such-config.json")
    assert "no-such-config.json: not found" in str(e) and "config.example.json" in str(e)
    with open("_bad_config.json", "w") as f:
        f.write('{"product_key": ')
    try:
        e = raises(config.ConfigError, config.load, "_bad_config.json")
        assert "not valid JSON" in str(e)
    finally:
        import os

        os.remove("_bad_config.json")


def test_example_config_is_valid():
    cfg = config.load("config.example.json")
    assert cfg["uart"]["rxbuf"] == 4096


def fails(field, **patch):
    """check() of base(**patch) raises ConfigError naming `field` (e.field and the message)."""
    e = raises(config.ConfigError, config.check, base(**patch))
    assert e.field == field and (": %s: " % field) in str(e), (field, patch, e.field, str(e))
    return str(e)


def test_numbers_are_finite_whole_and_inside_the_clock():
    assert "536871" in fails("interval", interval=536871)  # 2**29 ms and more: ticks_add raises
    fails("interval", interval=864000)  # 10 days
    fails("interval", interval=float("inf"))
    fails("interval", interval=float("nan"))
    fails("interval", interval=True)
    assert config.check(base(interval=536870))["interval"] == 536870
    assert config.check(base(interval=0.05))["interval"] == 0.05
    fails("keepalive", keepalive=300.0)
    fails("keepalive", keepalive=True)
    fails("qos", qos=1.0)
    fails("qos", qos=True)
    fails("stats_interval", stats_interval=86401)
    fails("stats_interval", stats_interval=float("nan"))
    fails("ntp_interval", ntp_interval=float("inf"))
    fails("property_interval", property_interval=-1)
    fails("backoff_refused_ms", backoff_refused_ms=86400001)
    fails("backoff_min_ms", backoff_min_ms=1.5)
    fails("outbox", outbox=False)
    fails("mqtt_port", mqtt_port=65536)
    fails("wdt_ms", wdt_ms=500)
    fails("wdt_ms", wdt_ms=False)
    fails("wdt_ms", wdt_ms=0.0)
    assert config.check(base(wdt_ms=0))["wdt_ms"] == 0
    fails("reset_pin", reset_pin=True)
    fails("reset_pin", reset_pin=49)
    fails("reset_pin", reset_pin="5")


def test_uart_fields():
    msg = fails("uart.baud", uart={"id": 1, "tx": 17, "rx": 16, "baud": 115201})
    assert "115201 is not a rate the module takes" in msg and "9600" in msg and "921600" in msg
    fails("uart.baud", uart={"id": 1, "tx": 17, "rx": 16, "baud": 115200.0})
    fails("uart.baud", uart={"url": "socket://127.0.0.1:7000", "baud": 100})
    fails("uart.rxbuf", uart={"id": 1, "tx": 17, "rx": 16, "rxbuf": 100})
    fails("uart.rxbuf", uart={"id": 1, "tx": 17, "rx": 16, "rxbuf": 40000})
    fails("uart.flow", uart={"id": 1, "tx": 17, "rx": 16, "flow": "yes"})
    fails("uart.rts", uart={"id": 1, "tx": 17, "rx": 16, "rts": 18})  # without "flow": true
    fails("uart.cts", uart={"id": 1, "tx": 17, "rx": 16, "flow": True, "rts": 18, "cts": 17})  # = tx
    fails("uart.rx", uart={"id": 1, "tx": 17, "rx": 17})
    fails("uart.id", uart={"id": 3, "tx": 17, "rx": 16})
    fails("uart.id", uart={"tx": 17, "rx": 16})
    fails("uart.tx", uart={"id": 1, "tx": -1, "rx": 16})
    assert "unknown field" in fails("uart.baudrate", uart={"id": 1, "tx": 17, "rx": 16, "baudrate": 9600})
    u = config.check(base(uart={"id": 1, "tx": 17, "rx": 16, "baud": 921600, "flow": True, "rts": 18, "cts": 19}))["uart"]
    assert u["flow"] is True and u["baud"] == 921600


def test_uart_url_syntax():
    for url in ("socket://127.0.0.1:0", "socket://127.0.0.1:65536", "socket://:7000", "socket://127.0.0.1",
                "socket://127.0.0.1:70a", "socket://bad host:7000", "socket://h\"x:1", 7000, "", "ttyUSB0"):
        fails("uart.url", uart={"url": url})
    assert 'did you mean "socket://127.0.0.1:7000"' in fails("uart.url", uart={"url": "127.0.0.1:7000"})
    for url in ("socket://localhost:7000", "socket://10.0.0.5:1", "/dev/ttyUSB0", "COM3", "loop://", "rfc2217://h:1"):
        assert config.check(base(uart={"url": url}))["uart"]["url"] == url


def test_strings_the_module_takes_literally():
    for bad in ('"', "\\", "\r", "\n", "\x00", "\x01", "\x7f", "\u00e9"):
        for field, good in (("product_key", "b0FMK1Ga5cp"), ("device_name", "86299141983"), ("client_id", "dev-1"),
                            ("apn", "CMIOT"), ("region", "cn-shanghai"), ("mqtt_host", "a.b.com"), ("auth_host", "a.b.com")):
            fails(field, **{field: good + bad})
            fails(field, **{field: bad + good})


def test_aliyun_rules_for_names():
    fails("device_name", device_name="abc")  # 4..32
    fails("device_name", device_name="d" * 33)
    fails("device_name", device_name="dev 1")
    fails("device_name", device_name="dev|1")
    fails("device_name", device_name="dev&1")
    assert config.check(base(device_name="dev@x.y:z-_1"))["device_name"] == "dev@x.y:z-_1"
    assert config.check(base(device_name="d" * 32))
    fails("product_key", product_key="a1-b")
    fails("product_key", product_key="p&k")
    fails("product_key", product_key=12345)
    fails("client_id", client_id="a|b")
    fails("client_id", client_id="")
    assert config.check(base(client_id="c" * 64))["client_id"] == "c" * 64
    fails("region", region="CN-Shanghai")
    fails("region", region="cn shanghai")
    fails("region", region="-cn")
    fails("region", region=None)
    assert config.check(base(region="ap-southeast-1"))["region"] == "ap-southeast-1"
    fails("mqtt_host", mqtt_host="h" * 254)
    fails("mqtt_host", mqtt_host=".a.com")
    fails("auth_host", auth_host="a..com")
    fails("apn", apn="a" * 101)


def test_module_limits():
    # AT+MCONFIG's username "{device_name}&{product_key}" must fit its 256 bytes
    assert "256" in fails("product_key", product_key="k" * 224, device_name="d" * 32)
    assert config.check(base(product_key="k" * 223, device_name="d" * 32))


class FakeMachine:
    """A board's machine module for config and uart: pins 0..29, UARTs recorded."""

    class Pin:
        def __init__(self, n):
            if not 0 <= n <= 29:
                raise ValueError("invalid pin")
            self.n = n

    class UART:
        RTS = 2
        CTS = 1
        made = []

        def __init__(self, uart_id, **kw):
            if kw["tx"].n % 4:
                raise ValueError("bad TX pin")
            FakeMachine.UART.made.append((uart_id, kw))


def on_board(fn, platform="rp2"):
    """fn() with FakeMachine as machine and config.PLATFORM = platform."""
    import sys

    saved = sys.modules.get("machine")
    sys.modules["machine"] = FakeMachine
    config.PLATFORM = platform
    try:
        return fn()
    finally:
        config.PLATFORM = sys.platform
        if saved is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = saved


def test_pins_the_board_has():
    def check():
        assert "30 is not a pin this board has" in fails("reset_pin", reset_pin=30)
        fails("uart.tx", uart={"id": 1, "tx": 40, "rx": 5})
        fails("uart.cts", uart={"id": 1, "tx": 4, "rx": 5, "flow": True, "rts": 7, "cts": 33})
        assert "8388" in fails("wdt_ms", wdt_ms=9000)  # RP2040's machine.WDT takes at most 8388 ms
        assert config.check(base(reset_pin=29, wdt_ms=8000, uart={"id": 1, "tx": 4, "rx": 5, "flow": True}))

    on_board(check)
    assert config.check(base(reset_pin=30))  # a PC: no pins to ask


def test_esp32_flow_needs_its_pins():
    def check():
        fails("uart.rts", uart={"id": 1, "tx": 17, "rx": 16, "flow": True})
        fails("uart.cts", uart={"id": 1, "tx": 17, "rx": 16, "flow": True, "rts": 18})
        assert config.check(base(wdt_ms=600000, uart={"id": 1, "tx": 17, "rx": 16, "flow": True, "rts": 18, "cts": 19}))

    on_board(check, "esp32")


def write(name, data):
    with open(name, "wb") as f:
        f.write(data)


def load_fails(data):
    """config.load() of a file holding `data` raises ConfigError for the file (field None)."""
    import os

    write("_bad_config.json", data)
    try:
        e = raises(config.ConfigError, config.load, "_bad_config.json")
    finally:
        os.remove("_bad_config.json")
    assert e.field is None and str(e).startswith("_bad_config.json: "), (data[:60], str(e))
    assert SECRET not in str(e) and SECRET not in repr(e) and all(SECRET not in str(a) for a in e.args)
    return str(e)


GOOD = '{"product_key": "b0FMK1Ga5cp", "device_name": "862991419835241", "device_secret": "%s"}' % SECRET


def test_load_refuses_a_file_that_is_not_utf8_json_and_shows_none_of_it():
    assert "not UTF-8" in load_fails(GOOD.replace("{", '{"apn": "@",').encode().replace(b"@", b"\xe9t\xe9"))  # Latin-1
    assert "not UTF-8" in load_fails(b"\xff\xfe{\x00" + GOOD[1:].encode())  # UTF-16 with its BOM
    assert "larger than" in load_fails(GOOD.replace("}", ', "x": "%s"}' % ("x" * 9000)).encode())
    assert "nested" in load_fails(('{"x": ' + "[" * 3000 + "]" * 3000 + "}").encode())  # CPython: RecursionError inside json
    assert "nested deeper" in load_fails(GOOD.replace("}", ', "x": [[[[[1]]]]]}').encode())
    assert "must hold a JSON object" in load_fails(b"[1, 2]")


def test_load_is_strict_json_on_both_interpreters():
    # MicroPython's json.loads takes all of these (CPython's takes the last three)
    for bad in (GOOD.replace('"device_name":', '"device_name"'),  # a missing ':'
                GOOD.replace(', "device_secret"', ' "device_secret"'),  # a missing ','
                GOOD.replace("}", ",}"),  # a trailing ','
                GOOD + " {}", GOOD + " 5", GOOD + "}",  # trailing data
                GOOD.replace("}", ', "interval": NaN}'),
                GOOD.replace("}", ', "interval": Infinity}'),
                GOOD.replace("{", '{"device_secret": "x",')):  # a field given twice
        assert "not valid JSON" in load_fails(bad.encode()), bad
    cfg = config.load  # and what strict JSON allows still loads:
    import os

    ok = GOOD.replace("}", ', "apn": "a\\\\\\"b:{,}[]", "interval": -1e-1, "uart": {"url": "socket://h:1"}}')
    write("_ok_config.json", ("\ufeff" + ok).encode())  # a BOM, escapes, structure inside a string
    try:
        e = raises(config.ConfigError, cfg, "_ok_config.json")  # parsed: only the values are wrong
        assert e.field == "apn", str(e)
    finally:
        os.remove("_ok_config.json")


def test_a_secret_is_never_in_an_error():
    for patch in ({"device_name": SECRET + "!"}, {"client_id": SECRET * 3}, {"apn": SECRET + '"'},
                  {"region": SECRET}, {"device_secret": SECRET + " "}, {"product_key": SECRET + "-"},
                  {"uart": {"url": SECRET}}, {"interval": SECRET}, {"uart": [SECRET]}):
        cfg = base(**patch)
        cfg["product_secret"] = SECRET
        e = raises(config.ConfigError, config.check, cfg)
        for text in (str(e), repr(e)) + tuple(str(a) for a in e.args):
            assert SECRET not in text and SECRET[:20] not in text, (patch, text)
