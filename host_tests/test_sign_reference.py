# firmware/sign.py against independent references (CPython only): CPython's hmac module
# on a few hundred seeded random inputs, the official Aliyun device SDK
# (aliyun-iot-linkkit) for the MQTT triple and the dynamic-registration sign, and
# tools/sign.py run as a subprocess.
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import urllib.parse

import pytest

from firmware import auth, sign

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = (("hmacmd5", hashlib.md5), ("hmacsha1", hashlib.sha1), ("hmacsha256", hashlib.sha256))

SEED = ("b0FMK1Ga5cp", "862991419835241", "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q")


def _rand_text(rng, n):
    alphabet = "abcXYZ019-_.~ &|=%+/é密钥ключ✓\U0001F600"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _rand_value(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n)) if rng.random() < 0.5 else _rand_text(rng, n)


def _b(v):
    return v.encode() if isinstance(v, str) else v


def test_random_inputs_match_cpython_hmac():
    rng = random.Random(20240603)
    count = 0
    for _ in range(400):
        key = _rand_value(rng, rng.choice((1, 2, rng.randint(1, 200), 63, 64, 65, 128, 129)))
        msg = _rand_value(rng, rng.choice((0, rng.randint(0, 300), 55, 56, 64, 119, 120)))
        for method, algo in METHODS:
            want = hmac.new(_b(key), _b(msg), algo).hexdigest()
            assert sign.hmac_hex(method, key, msg) == want
            assert sign.hmac_hex(method.upper(), key, msg) == want
            assert sign._hmac(method[4:], _b(key), _b(msg), True).hex() == want
            count += 1
    assert count == 1200


def test_random_credentials_match_formula():
    # the documented formula, computed here with CPython's hmac, on random device triples
    rng = random.Random(7)
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_@.:"
    for _ in range(200):
        pk = "".join(rng.choice(chars[:62]) for _ in range(11))
        dn = "".join(rng.choice(chars) for _ in range(rng.randint(4, 32)))
        ds = "".join(rng.choice(chars[:62]) for _ in range(32))
        method, algo = rng.choice(METHODS)
        ts = str(rng.randint(10**12, 2 * 10**12)) if rng.random() < 0.5 else None
        cid = rng.choice((None, dn, "%s&%s" % (pk, dn)))
        mode = rng.choice((2, 3))
        mid, user, pw = sign.mqtt_credentials(pk, dn, ds, client_id=cid, method=method, timestamp=ts,
                                              securemode=mode)
        marker = cid or "%s.%s" % (pk, dn)
        content = "clientId%sdeviceName%sproductKey%s%s" % (marker, dn, pk, "timestamp" + ts if ts else "")
        assert pw == hmac.new(ds.encode(), content.encode(), algo).hexdigest()
        assert user == "%s&%s" % (dn, pk)
        extra = ",timestamp=" + ts if ts else ""
        assert mid == "%s|securemode=%d,signmethod=%s%s|" % (marker, mode, method, extra)
        # the /auth/devicename body decodes to the same fields, and its sign checks out
        body = auth.auth_form(pk, dn, ds, client_id=cid, method=method, timestamp=ts)
        form = dict(urllib.parse.parse_qsl(body, strict_parsing=True))
        acid = cid or dn
        assert form["productKey"] == pk and form["deviceName"] == dn and form["clientId"] == acid
        content = "clientId%sdeviceName%sproductKey%s%s" % (acid, dn, pk, "timestamp" + ts if ts else "")
        assert form["sign"] == hmac.new(ds.encode(), content.encode(), algo).hexdigest()
        assert form.get("signmethod", "hmacmd5") == method
        assert form.get("timestamp") == ts
        assert body.isascii()


# --- the official SDK as a reference --------------------------------------------------


@pytest.fixture
def linkkit_mod():
    return pytest.importorskip("linkkit.linkkit")


class _FakeMqttClient:
    """Stands in for paho's Client inside the SDK: records what the SDK would connect with."""
    made = None  # a list, set by each test

    def __init__(self, client_id=None, **kw):
        self.client_id = client_id
        _FakeMqttClient.made.append(self)

    def username_pw_set(self, username, password):
        self.username = username
        self.password = password

    def __getattr__(self, name):  # enable_logger, reconnect_delay_set, tls_set_context...
        return lambda *a, **kw: None


def _sdk_mqtt(lk_mod, monkeypatch, pk, dn, ds, timestamp, tls=True):
    class _Clock:
        @staticmethod
        def time():
            return timestamp

    monkeypatch.setattr(lk_mod, "time", _Clock)
    monkeypatch.setattr(lk_mod.mqtt, "Client", _FakeMqttClient)
    _FakeMqttClient.made = []
    kit = lk_mod.LinkKit(host_name="cn-shanghai", product_key=pk, device_name=dn, device_secret=ds)
    try:
        if not tls:
            kit.config_mqtt(secure="")
        kit._LinkKit__config_mqtt_client_internal()
    finally:
        kit.destruct()
    (client,) = _FakeMqttClient.made
    return client.client_id, client.username, client.password


def _params(mqtt_id):
    marker, params, tail = mqtt_id.split("|")
    assert tail == ""
    return marker, dict(p.split("=", 1) for p in params.split(","))


@pytest.mark.parametrize("pk,dn,ds,ts,tls", [
    SEED + (1589524964, True),
    ("a1mxL3s6Z7m", "866714043075174", "Kx7mQp2Lr9Tz4Wb6Nc1Vd8Hf3Jg5Ys0A", 1700000000, True),
    ("a1B2c3D4e5F", "meter-01@lab:7", "0123456789abcdef0123456789ABCDEF", 42, False),
])
def test_mqtt_triple_matches_official_sdk(linkkit_mod, monkeypatch, pk, dn, ds, ts, tls):
    sdk_id, sdk_user, sdk_pw = _sdk_mqtt(linkkit_mod, monkeypatch, pk, dn, ds, ts, tls)
    sdk_marker, sdk_params = _params(sdk_id)
    mode = int(sdk_params["securemode"])
    assert mode == (2 if tls else 3)
    # the SDK signs with hmacsha1, marker "pk&dn", timestamp in its clientId
    ours = sign.mqtt_credentials(pk, dn, ds, client_id=sdk_marker, method=sdk_params["signmethod"],
                                 timestamp=sdk_params["timestamp"], securemode=mode)
    assert ours[2] == sdk_pw
    assert ours[1] == sdk_user
    marker, params = _params(ours[0])
    assert marker == sdk_marker == "%s&%s" % (pk, dn)
    # every parameter we send is one the SDK sends, with the same value (it adds ext, _v...)
    assert set(params) == {"securemode", "signmethod", "timestamp"}
    for k, v in params.items():
        assert sdk_params[k] == v, k


def test_register_sign_matches_official_sdk(linkkit_mod, monkeypatch):
    pk, dn, ps = "a1mxL3s6Z7m", "meter-01", "ps0123456789abcdef0123456789ABCD"
    sent = {}

    class _Reply:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b'{"code":200,"data":{"productKey":"pk","deviceName":"dn","deviceSecret":"s"},"message":"success"}'

    def fake_urlopen(url, data=None, context=None, **kw):
        sent["url"] = url
        sent["data"] = data.decode()
        return _Reply()

    monkeypatch.setattr(linkkit_mod.urllib.request, "urlopen", fake_urlopen)
    for _ in range(5):  # the SDK picks its own random string each time
        kit = linkkit_mod.LinkKit(host_name="cn-shanghai", product_key=pk, device_name=dn, device_secret="",
                                  product_secret=ps)
        try:
            assert kit._LinkKit__dynamic_register_device() == (0, "s")
        finally:
            kit.destruct()
        assert sent["url"] == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device"
        sdk = dict(urllib.parse.parse_qsl(sent["data"]))
        body = auth.register_form(pk, dn, ps, sdk["random"])
        assert dict(urllib.parse.parse_qsl(body)) == sdk
        assert body == sent["data"]  # same field order and encoding, too


# --- the CLI ------------------------------------------------------------------------


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tools.sign"] + list(args), check=False, capture_output=True,
                          text=True, timeout=30, cwd=ROOT, env=env)


def _seed_args():
    return ["--product-key", SEED[0], "--device-name", SEED[1], "--device-secret", SEED[2]]


def test_cli_json_fields():
    r = _cli(*_seed_args(), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"client_id", "username", "password", "host", "port", "mconfig", "auth_body",
                        "auth_body_length"}
    cid, user, pw = sign.mqtt_credentials(*SEED)
    assert out["client_id"] == cid == "b0FMK1Ga5cp.862991419835241|securemode=2,signmethod=hmacsha256|"
    assert out["username"] == user == "862991419835241&b0FMK1Ga5cp"
    content = "clientIdb0FMK1Ga5cp.862991419835241deviceName862991419835241productKeyb0FMK1Ga5cp"
    assert out["password"] == pw == hmac.new(SEED[2].encode(), content.encode(), hashlib.sha256).hexdigest()
    assert out["host"] == "b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert out["port"] == 1883
    assert out["mconfig"] == 'AT+MCONFIG="%s","%s","%s"' % (cid, user, pw)
    assert out["auth_body"] == ("productKey=b0FMK1Ga5cp&sign=93a4430caf5304c3442061eee892329b"
                                "&clientId=862991419835241&deviceName=862991419835241")
    assert out["auth_body_length"] == 112


def test_cli_json_options():
    r = _cli(*_seed_args(), "--json", "--client-id", "imei-1", "--method", "HMACSHA1", "--timestamp", "1589524964799",
             "--securemode", "3", "--region", "cn-beijing")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cid, user, pw = sign.mqtt_credentials(*SEED, client_id="imei-1", method="hmacsha1", timestamp="1589524964799",
                                          securemode=3)
    assert (out["client_id"], out["username"], out["password"]) == (cid, user, pw)
    assert cid == "imei-1|securemode=3,signmethod=hmacsha1,timestamp=1589524964799|"
    assert out["host"] == "b0FMK1Ga5cp.iot-as-mqtt.cn-beijing.aliyuncs.com"
    body = auth.auth_form(*SEED, client_id="imei-1", method="hmacsha1", timestamp="1589524964799")
    assert out["auth_body"] == body and body.endswith("&signmethod=hmacsha1&timestamp=1589524964799")
    assert out["auth_body_length"] == len(body.encode())


def test_cli_text_output():
    r = _cli(*_seed_args())
    assert r.returncode == 0, r.stderr
    cid, user, pw = sign.mqtt_credentials(*SEED)
    mconfig = 'AT+MCONFIG="%s","%s","%s"' % (cid, user, pw)
    lines = r.stdout.splitlines()
    assert mconfig in lines
    assert "112 bytes" in r.stdout
    body = auth.auth_form(*SEED)
    i = lines.index("AT+HTTPDATA=112,20000")
    assert body in lines[i + 1:i + 3]
    script = [ln for ln in lines[lines.index("AT"):] if not ln.startswith("#")]
    assert script == [
        "AT", "AT+CGMR", "AT+CGATT?",
        'AT+SAPBR=3,1,"CONTYPE","GPRS"', 'AT+SAPBR=3,1,"APN","CMIIOT"', "AT+SAPBR=1,1",
        "AT+HTTPINIT",
        'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"',
        'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"',
        "AT+HTTPDATA=112,20000", body, "AT+HTTPACTION=1", "AT+HTTPREAD", "AT+HTTPTERM",
        mconfig, 'AT+SSLMIPSTART="b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883',
        "AT+MCONNECT=1,300",
        'AT+MSUB="/b0FMK1Ga5cp/862991419835241/user/get",0',
        "AT+MQTTMSGSET=0",
        'AT+MPUB="/b0FMK1Ga5cp/862991419835241/user/update",0,0,"HelloWorld"',
    ]


def test_cli_plain_tcp_uses_mipstart():
    r = _cli(*_seed_args(), "--securemode", "3")
    assert r.returncode == 0, r.stderr
    assert 'AT+MIPSTART="b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883' in r.stdout.splitlines()
    assert "SSLMIPSTART" not in r.stdout


def test_cli_secret_from_environment():
    env = dict(os.environ, ALIYUN_DEVICE_SECRET=SEED[2])
    r = _cli("--product-key", SEED[0], "--device-name", SEED[1], "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["auth_body_length"] == 112


@pytest.mark.parametrize("args,field", [
    (["--device-name", "a|b"], "device_name"),
    (["--device-name", ""], "device_name"),
    (["--product-key", "p&k"], "product_key"),
    (["--device-secret", ""], "device_secret"),
    (["--client-id", "x" * 65], "client_id"),
    (["--client-id", 'a"b'], "client_id"),
    (["--method", "md5"], "method"),
    (["--timestamp", "soon"], "timestamp"),
    (["--securemode", "4"], "securemode"),
    (["--securemode", "two"], "--securemode"),
    (["--region", "cn shanghai"], "region"),
])
def test_cli_bad_input(args, field):
    base = dict(zip(_seed_args()[::2], _seed_args()[1::2]))
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = [x for kv in base.items() for x in kv] + ["--json"]
    r = _cli(*argv)
    assert r.returncode == 2
    assert r.stdout == ""
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert field in err
    assert SEED[2] not in err


def test_cli_missing_argument():
    r = _cli("--product-key", "pk")
    assert r.returncode == 2
    assert "--device-name" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
