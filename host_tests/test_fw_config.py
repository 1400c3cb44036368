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
