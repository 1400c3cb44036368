# firmware/sign.py under CPython and MicroPython: published Aliyun check values, the seed
# example, RFC 1321 / FIPS 180 / RFC 2202 / RFC 4231 vectors for the hashlib path and the
# pure-Python fallback, the three credential shapes, and every argument error.
import hashlib

from fwtest import raises

from firmware import auth, sign
from firmware.port import hexlify

SEED_PK = "b0FMK1Ga5cp"
SEED_DN = "862991419835241"
SEED_DS = "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
SEED_BODY = ("productKey=b0FMK1Ga5cp&sign=93a4430caf5304c3442061eee892329b"
             "&clientId=862991419835241&deviceName=862991419835241")
ALIYUN_CONTENT = "clientId12345deviceNamedeviceproductKeypktimestamp789"


def _hex(b):
    return hexlify(b).decode()


def _msg(n):
    return bytes([(i * 7 + 3) & 255 for i in range(n)])


# --- published values ---------------------------------------------------------------


def test_aliyun_published_check_values():
    assert sign.hmac_hex("hmacsha1", "secret", ALIYUN_CONTENT).upper() == "FAFD82A3D602B37FB0FA8B7892F24A477F851A14"
    assert sign.hmac_hex("hmacmd5", "secret", ALIYUN_CONTENT).upper() == "14B198324FE55E1D3C88F2E705E201EE"
    # method is case-insensitive, key/message may be bytes
    assert sign.hmac_hex("HmacMD5", b"secret", ALIYUN_CONTENT.encode()) == "14b198324fe55e1d3c88f2e705e201ee"


def test_aliyun_check_values_through_fallback():
    c = ALIYUN_CONTENT.encode()
    assert _hex(sign._hmac("sha1", b"secret", c, True)) == "fafd82a3d602b37fb0fa8b7892f24a477f851a14"
    assert _hex(sign._hmac("md5", b"secret", c, True)) == "14b198324fe55e1d3c88f2e705e201ee"


def test_sign_content_sorts_and_concatenates():
    fields = (("timestamp", "789"), ("productKey", "pk"), ("clientId", "12345"), ("deviceName", "device"))
    assert sign.sign_content(fields) == ALIYUN_CONTENT
    assert sign.sign_content((("b", "2"), ("a", "1"), ("c", None))) == "a1b2"


def test_mqtt_credentials_aliyun_check_value():
    cid, user, pw = sign.mqtt_credentials("pk", "device", "secret", client_id="12345", method="hmacsha1",
                                          timestamp="789")
    assert cid == "12345|securemode=2,signmethod=hmacsha1,timestamp=789|"
    assert user == "device&pk"
    assert pw == "fafd82a3d602b37fb0fa8b7892f24a477f851a14"
    # an int timestamp is the same thing
    assert sign.mqtt_credentials("pk", "device", "secret", client_id="12345", method="HMACSHA1",
                                 timestamp=789) == (cid, user, pw)


# --- the seed example -----------------------------------------------------------------


def test_seed_example_sign_and_body():
    content = "clientId%sdeviceName%sproductKey%s" % (SEED_DN, SEED_DN, SEED_PK)
    assert sign.hmac_hex("hmacmd5", SEED_DS, content) == "93a4430caf5304c3442061eee892329b"
    body = auth.auth_form(SEED_PK, SEED_DN, SEED_DS)  # clientId defaults to the device name
    assert body == SEED_BODY
    assert len(body) == 112 and len(body.encode()) == 112
    assert auth.auth_form(SEED_PK, SEED_DN, SEED_DS, client_id=SEED_DN, method="hmacmd5") == SEED_BODY
    assert "1eb96463ad2345b6c261e2f7cc78a7a0" not in body  # the seed's printed (wrong) value


def test_auth_form_signmethod_and_timestamp():
    body = auth.auth_form("pk", "device", "secret", client_id="12345", method="hmacsha1", timestamp=789)
    assert body == ("productKey=pk&sign=fafd82a3d602b37fb0fa8b7892f24a477f851a14&clientId=12345"
                    "&deviceName=device&signmethod=hmacsha1&timestamp=789")
    body = auth.auth_form("pk", "device", "secret", client_id="12345", timestamp="789")
    assert body == ("productKey=pk&sign=14b198324fe55e1d3c88f2e705e201ee&clientId=12345"
                    "&deviceName=device&timestamp=789")


def test_auth_form_percent_encodes_fields():
    # the sign covers the raw value; the body carries it percent-encoded (UTF-8, upper hex)
    body = auth.auth_form("pk", "dev", "密钥", client_id="a b/é&x")
    assert body == "productKey=pk&sign=8fba8db19f8b05ae15e1ea792a3a53e7&clientId=a%20b%2F%C3%A9%26x&deviceName=dev"
    assert auth._quote("AZaz09-_.~") == "AZaz09-_.~"
    assert auth._quote("a+b=c%") == "a%2Bb%3Dc%25"


# --- MQTT direct ----------------------------------------------------------------------

_DS = "Kx7mQp2Lr9Tz4Wb6Nc1Vd8Hf3Jg5Ys0A"


def test_mqtt_credentials_known_case():
    pk, dn = "a1mxL3s6Z7m", "866714043075174"
    assert sign.mqtt_credentials(pk, dn, _DS, timestamp="1589524964799") == (
        "a1mxL3s6Z7m.866714043075174|securemode=2,signmethod=hmacsha256,timestamp=1589524964799|",
        "866714043075174&a1mxL3s6Z7m",
        "7268ae77bc5d1468904576edd9075b0aa12f3312db736dab32aa0e9d75517e2f",
    )
    assert sign.mqtt_credentials(pk, dn, _DS) == (
        "a1mxL3s6Z7m.866714043075174|securemode=2,signmethod=hmacsha256|",
        "866714043075174&a1mxL3s6Z7m",
        "7e3a761344f6d83babaf8e970776b0d26e44fd8aad1543c319522d6054f06b2c",
    )
    cid, _, pw = sign.mqtt_credentials(pk, dn, _DS, method="hmacmd5", timestamp=1589524964799, securemode=3)
    assert cid == "a1mxL3s6Z7m.866714043075174|securemode=3,signmethod=hmacmd5,timestamp=1589524964799|"
    assert pw == "a2593385826bcded9d019088ad912c8f"
    _, _, pw = sign.mqtt_credentials(pk, dn, _DS, method="hmacsha1", timestamp="1589524964799")
    assert pw == "5b559ca0176e43fffc76bb5f5bd0951d4f01127a"


# --- dynamic registration ---------------------------------------------------------------


def test_register_form():
    body = auth.register_form("a1mxL3s6Z7m", "meter-01", "ps0123456789abcdef", "8Ryu2EbKzT3vHq1")
    assert body == ("productKey=a1mxL3s6Z7m&deviceName=meter-01&random=8Ryu2EbKzT3vHq1"
                    "&sign=56d1091a0cf6b44cf99be24f4bc42acba1fe27baafc8b618d82b6b3286cc06c7&signMethod=hmacsha256")
    body = auth.register_form("a1mxL3s6Z7m", "meter-01", "ps0123456789abcdef", "8Ryu2EbKzT3vHq1", method="hmacmd5")
    assert body.endswith("&sign=6335ab28c8092ba353867f28205f67dc&signMethod=hmacmd5")


# --- digests: hashlib and the pure-Python fallback ------------------------------------

_MD5 = (
    (b"", "d41d8cd98f00b204e9800998ecf8427e"),
    (b"a", "0cc175b9c0f1b6a831c399e269772661"),
    (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
    (b"1234567890" * 8, "57edf4a22be3c955ac49da2e2107b67a"),
)
_SHA1 = (
    (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "a49b2446a02c645bf419f995b67091253a04a259"),
)
# _msg(n) digests (boundary lengths around the 56-byte padding limit, multi-block)
_LENGTHS = (
    (55, "52c0e574e1198de5fe3f8f11440dcb1b", "ddf57317ef34bfee3b6df83d359098930eb278bc"),
    (56, "46c9907fc908ee68b1e7b8e71286a518", "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"),
    (63, "a62f6d59e837867693f042f5b8f5a236", "c55856749bef509bdfe6bfebfc7bf4e793e82132"),
    (64, "7160b8fb5e9e4023d549c3971fbaeead", "bede92be29c3874e1b54ddc77988d606fc857a8e"),
    (65, "70bd662e7aefbda85a0f7244167b7897", "b05a80522b053d6dc7e0a517d0e70212c7dad11f"),
    (119, "e84905d4214f4d1ca56c2cdcc152b143", "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"),
    (120, "e3eb5a6c8669ea01a8c185b8abc8a5dc", "82134b02fb3f702491be9bed581eeab59334acb2"),
    (1000, "10046f077f2082ac19676b8079f1cb1a", "4231a8a50a10fa9758db8ec71fdef855b751048a"),
)


def test_md5_fallback_vectors():
    for data, want in _MD5:
        assert _hex(sign._digest("md5", data, True)) == want, data
        assert _hex(sign._digest("md5", data)) == want, data


def test_sha1_fallback_vectors():
    for data, want in _SHA1:
        assert _hex(sign._digest("sha1", data, True)) == want, data
        assert _hex(sign._digest("sha1", data)) == want, data


def test_fallback_boundary_lengths():
    for n, md5, sha1 in _LENGTHS:
        m = _msg(n)
        assert _hex(sign._digest("md5", m, True)) == md5, n
        assert _hex(sign._digest("sha1", m, True)) == sha1, n
        assert _hex(sign._digest("md5", m)) == md5, n
        assert _hex(sign._digest("sha1", m)) == sha1, n


def test_fallback_every_length_matches_hashlib():
    for n in range(130):
        m = _msg(n)
        assert sign._digest("md5", m, True) == hashlib.md5(m).digest(), n
        assert sign._digest("sha1", m, True) == hashlib.sha1(m).digest(), n


def test_hmac_rfc_vectors():
    cases = (
        ("md5", b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
        ("sha1", b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
        ("md5", b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
        ("sha1", b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        ("sha256", b"Jefe", b"what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("md5", b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"),
        ("sha1", b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
    )
    for name, key, msg, want in cases:
        assert sign.hmac_hex("hmac" + name, key, msg) == want, (name, key)
        assert _hex(sign._hmac(name, key, msg, True)) == want, (name, key)


def test_fallback_hmac_equals_hashlib_hmac():
    texts = ("", "clientId862991419835241deviceName862991419835241productKeyb0FMK1Ga5cp",
             "设备 «é» ✓ " * 7, _msg(200))
    for klen in (1, 16, 32, 63, 64, 65, 100, 200):
        key = _msg(klen)
        for text in texts:
            msg = text.encode() if isinstance(text, str) else text
            for name in ("md5", "sha1"):
                assert sign._hmac(name, key, msg, True) == sign._hmac(name, key, msg, False), (name, klen)
    # non-ASCII str key and message go in as UTF-8
    k, m = "密钥ключ", "сообщение 消息"
    for method in ("hmacmd5", "hmacsha1", "hmacsha256"):
        assert sign.hmac_hex(method, k, m) == sign.hmac_hex(method, k.encode(), m.encode())
    assert _hex(sign._hmac("md5", k.encode(), m.encode(), True)) == sign.hmac_hex("hmacmd5", k, m)


class _NoMd5:  # a hashlib like a plain Pico build's: sha1 and sha256, no md5
    sha1 = hashlib.sha1
    sha256 = hashlib.sha256


def test_board_without_hashlib_md5_uses_fallback():
    saved = sign._hashlib
    sign._hashlib = _NoMd5
    try:
        assert auth.auth_form(SEED_PK, SEED_DN, SEED_DS) == SEED_BODY
        assert sign.hmac_hex("hmacmd5", "secret", ALIYUN_CONTENT) == "14b198324fe55e1d3c88f2e705e201ee"
        assert sign.hmac_hex("hmacmd5", _msg(100), "x") == sign.hmac_hex("hmacmd5", _msg(100), b"x")
        sign._hashlib = None  # no hashlib at all: md5 and sha1 still work, sha256 says why not
        assert sign.hmac_hex("hmacsha1", "secret", ALIYUN_CONTENT) == "fafd82a3d602b37fb0fa8b7892f24a477f851a14"
        e = raises(ValueError, sign.hmac_hex, "hmacsha256", "k", "m")
        assert str(e).startswith("method:")
    finally:
        sign._hashlib = saved
    assert sign.hmac_hex("hmacmd5", "secret", ALIYUN_CONTENT) == "14b198324fe55e1d3c88f2e705e201ee"


# --- argument errors ------------------------------------------------------------------

_SECRET = "TopSecretValue123"


def _check(field, fn, *args, **kw):
    e = raises(ValueError, fn, *args, **kw)
    msg = str(e)
    assert msg.startswith(field + ":"), (field, msg)
    assert _SECRET not in msg, msg


def test_errors_mqtt_credentials():
    f = sign.mqtt_credentials
    _check("product_key", f, "", "dn", _SECRET)
    _check("product_key", f, None, "dn", _SECRET)
    _check("product_key", f, "p|k", "dn", _SECRET)
    _check("product_key", f, "p&k", "dn", _SECRET)
    _check("device_name", f, "pk", "", _SECRET)
    _check("device_name", f, "pk", "d|n", _SECRET)
    _check("device_name", f, "pk", "d&n", _SECRET)
    _check("device_name", f, "pk", 12345, _SECRET)
    _check("device_secret", f, "pk", "dn", "")
    _check("device_secret", f, "pk", "dn", None)
    _check("device_secret", f, "pk", "dn", 42)
    _check("client_id", f, "pk", "dn", _SECRET, client_id="")
    _check("client_id", f, "pk", "dn", _SECRET, client_id="a|b")
    _check("client_id", f, "pk", "dn", _SECRET, client_id="x" * 65)
    assert f("pk", "dn", _SECRET, client_id="x" * 64)[0].startswith("x" * 64 + "|")
    _check("method", f, "pk", "dn", _SECRET, method="hmacsha512")
    _check("method", f, "pk", "dn", _SECRET, method="")
    _check("method", f, "pk", "dn", _SECRET, method=None)
    _check("timestamp", f, "pk", "dn", _SECRET, timestamp="12a")
    _check("timestamp", f, "pk", "dn", _SECRET, timestamp="")
    _check("timestamp", f, "pk", "dn", _SECRET, timestamp=-1)
    _check("securemode", f, "pk", "dn", _SECRET, securemode=1)
    _check("securemode", f, "pk", "dn", _SECRET, securemode=4)
    _check("securemode", f, "pk", "dn", _SECRET, securemode="2")
    assert f("pk", "dn", _SECRET, securemode=3)[0] == "pk.dn|securemode=3,signmethod=hmacsha256|"


def test_error_message_text():
    e = raises(ValueError, sign.mqtt_credentials, "pk", "a|b", _SECRET)
    assert str(e) == "device_name: must not contain '|' or '&'"
    e = raises(ValueError, sign.mqtt_credentials, "pk", "dn", "")
    assert str(e) == "device_secret: must not be empty"
    # a default clientId (pk.dn) longer than 64 characters is refused too
    e = raises(ValueError, sign.mqtt_credentials, "p" * 40, "d" * 40, _SECRET)
    assert str(e).startswith("client_id:")


def test_errors_auth_form():
    f = auth.auth_form
    _check("product_key", f, "", "dn", _SECRET)
    _check("product_key", f, "p|k", "dn", _SECRET)
    _check("device_name", f, "pk", "d&n", _SECRET)
    _check("device_name", f, "pk", None, _SECRET)
    _check("device_secret", f, "pk", "dn", b"")
    _check("client_id", f, "pk", "dn", _SECRET, client_id="y" * 65)
    _check("client_id", f, "pk", "dn", _SECRET, client_id="a|b")
    _check("method", f, "pk", "dn", _SECRET, method="md5")
    _check("timestamp", f, "pk", "dn", _SECRET, timestamp="1.5")


def test_errors_register_form():
    f = auth.register_form
    _check("product_key", f, "", "dn", _SECRET, "r")
    _check("device_name", f, "pk", "a|b", _SECRET, "r")
    _check("product_secret", f, "pk", "dn", "", "r")
    _check("random", f, "pk", "dn", _SECRET, "")
    _check("method", f, "pk", "dn", _SECRET, "r", method="sha256")


def test_errors_hmac_hex():
    _check("method", sign.hmac_hex, "hmacsha384", _SECRET, "m")
    _check("method", sign.hmac_hex, 5, _SECRET, "m")
    _check("key", sign.hmac_hex, "hmacmd5", "", "m")
    _check("key", sign.hmac_hex, "hmacmd5", None, "m")
    _check("message", sign.hmac_hex, "hmacmd5", _SECRET, 3.5)
    assert sign.hmac_hex("hmacmd5", "k", "") == sign.hmac_hex("hmacmd5", b"k", b"")


def test_the_signer_is_loaded_for_a_connect_and_let_go():
    """A board keeps no signer in RAM between connects: config checks the sign method
    without it, and credentials() imports it for the password and drops it afterwards."""
    import sys

    from firmware import aliyun

    cfg = {"auth": "mqtt", "product_key": "pk", "device_name": "dn", "device_secret": "ds", "client_id": None,
           "sign_method": "hmacsha256", "tls": True, "mqtt_host": None, "region": "cn-shanghai", "mqtt_port": 1883}
    import firmware
    from firmware.port import drop

    kept = {m: sys.modules.get(m) for m in ("firmware.sign", "firmware.config")}
    try:
        for m in kept:
            drop(m)
        import firmware.config  # noqa: F401  (loaded afresh: what it imports is loaded now)

        assert "firmware.sign" not in sys.modules
        cid, user, password, _, _ = aliyun.credentials(None, cfg)
        assert "firmware.sign" not in sys.modules
        assert (cid, user) == ("pk.dn|securemode=2,signmethod=hmacsha256|", "dn&pk")
        assert password == sign.hmac_hex("hmacsha256", "ds", "clientIdpk.dndeviceNamednproductKeypk")
    finally:  # the other tests' modules as they were (their ConfigError is that module's)
        for m, mod in kept.items():
            if mod is not None:
                sys.modules[m] = mod
                setattr(firmware, m.split(".")[1], mod)
