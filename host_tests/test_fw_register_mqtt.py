# Dynamic registration over MQTT (firmware/register.py, "register": "mqtt" / "mqtt_nwl") with
# a stub modem and real files: the request's clientId, username and password (against a
# reference HMAC), the push taken and stored atomically, what the platform's answer must
# hold, a refused CONNACK explained and retried slowly, no answer, the stored token merged at
# load and used for the connwl login, and the config checks. Runs under CPython and
# MicroPython.
import json
import os

import fwtest
from fwtest import capture_log, raises, release_log, rmtree

from firmware import aliyun, config, register, secret
from firmware.errors import CloudError, ModemError

PK, DN, PS = "a1DynRegPk1", "dyn-device-7", "DynRegProductSecret00000000000001"
RND = "0123456789abcdef"
DS = "RegisteredSecret0000000000000042"
CID, TOKEN = "nwlClientId0000000000001", "nwlDeviceToken000000000000000001"
# HMAC-SHA256 / HMAC-MD5 (product secret, "deviceName" DN "productKey" PK "random" RND), by CPython's hmac
SIGN256 = "10bb2be120703338db8f2517a8df9ee16457f6d76d4288956df3bb30c92c259d"
SIGN_MD5 = "223e4799823471c81b0b30e64768c536"


def cfg(d, **kw):
    c = {"product_key": PK, "device_name": DN, "product_secret": PS, "register": "mqtt", "tls_verify": False,
         "backoff_min_ms": 10, "backoff_max_ms": 20, "backoff_refused_ms": 600000}
    c.update(kw)
    c = config.check(c)
    c["secret_file"] = d + "/secret.json"
    return c


class Modem:
    """What register_mqtt uses of Air72x: the connect, the push as a downlink, the close."""

    def __init__(self, topic=None, answer=None, refuse=False, error=None):
        self.topic, self.answer, self.refuse, self.error = topic, answer, refuse, error
        self.at = self
        self.on_message = self.on_event = "link's"
        self.mqtt_connected = False
        self.log = []
        self.connects = []

    def cmd(self, c, **kw):
        self.log.append(c)

    def mqtt_disconnect(self):
        self.log.append("disconnect")
        self.mqtt_connected = False

    def mqtt_connect(self, cid, user, password, host, port, tls=True, keepalive=300):
        self.connects.append((cid, user, password, host, port, tls))
        if self.refuse:
            raise ModemError("the MQTT server refused the connection", "refused")
        if self.error:
            raise ModemError(self.error, "connect")
        self.mqtt_connected = True

    def sleep(self, ms):
        self.log.append("sleep")
        if self.answer is not None:
            self.on_message(self.topic, self.answer)  # pushed, then the platform closes
        self.mqtt_connected = False

    def deliver(self):
        pass


def test_the_request_is_the_documented_triple():
    d = fwtest.tmpdir("regmqtt")
    try:
        cid, user, password = register.mqtt_request(cfg(d), RND)
        assert cid == "%s.%s|securemode=2,authType=register,random=%s,signmethod=hmacsha256|" % (PK, DN, RND)
        assert user == DN + "&" + PK and password == SIGN256
        cid, _, password = register.mqtt_request(cfg(d, register="mqtt_nwl", sign_method="hmacmd5", client_id="sn42"), RND)
        assert cid == "sn42|securemode=-2,authType=regnwl,random=%s,signmethod=hmacmd5|" % RND and password == SIGN_MD5
        cid = register.mqtt_request(cfg(d, instance_id="iot-06z00ax1o4qq2ly"), RND)[0]
        assert cid.endswith("|securemode=-2,authType=register,random=%s,signmethod=hmacsha256,instanceId=iot-06z00ax1o4qq2ly|" % RND)
    finally:
        rmtree(d)


def test_pre_registered_secret_is_stored_and_merged():
    d = fwtest.tmpdir("regmqtt")
    try:
        c = cfg(d, tls=False)
        m = Modem("/ext/register", json.dumps({"productKey": PK, "deviceName": DN, "deviceSecret": DS}))
        assert register.register(m, c, RND) == DS and c["device_secret"] == DS
        cid, user, password, host, port, tls = m.connects[0]
        assert (host, port, tls) == ("%s.iot-as-mqtt.cn-shanghai.aliyuncs.com" % PK, 1883, True)  # TLS whatever "tls" says
        assert m.log[:2] == ["disconnect", "AT+MQTTMSGSET=0"] and m.log[-1] == "disconnect"
        assert m.on_message == "link's" and m.on_event == "link's"  # handed back
        assert json.loads(open(d + "/secret.json").read()) == {"product_key": PK, "device_name": DN, "device_secret": DS}
        assert sorted(os.listdir(d)) == ["secret.json"]
        c2 = {"product_key": PK, "device_name": DN}
        assert secret.merge(c2, d + "/config.json") == "stored" and c2["device_secret"] == DS
    finally:
        rmtree(d)


def test_token_is_stored_merged_and_used_for_the_connwl_login():
    d = fwtest.tmpdir("regmqtt")
    try:
        c = cfg(d, register="mqtt_nwl")
        answer = json.dumps({"clientId": CID, "productKey": PK, "deviceName": DN, "deviceToken": TOKEN})
        assert register.register(Modem("/ext/regnwl", answer), c, RND) == TOKEN
        assert json.loads(open(d + "/secret.json").read()) == {"product_key": PK, "device_name": DN,
                                                               "client_id": CID, "device_token": TOKEN}
        with open(d + "/config.json", "w") as f:
            f.write(json.dumps({"product_key": PK, "device_name": DN, "product_secret": PS, "register": "mqtt_nwl",
                                "tls_verify": False}))
        loaded = config.load(d + "/config.json")
        assert loaded["device_token"] == TOKEN and loaded["token_client_id"] == CID and not loaded.get("device_secret")
        assert aliyun.credentials(None, loaded) == (CID + "|securemode=-2,authType=connwl|", DN + "&" + PK, TOKEN,
                                                    "%s.iot-as-mqtt.cn-shanghai.aliyuncs.com" % PK, 1883)
        assert register.provision(Modem(), loaded) is True  # nothing to do: no request
        masked = config.masked(loaded)
        assert masked["device_token"] == "****" and masked["token_client_id"] == "****"
    finally:
        rmtree(d)


def test_answers_that_are_wrong_are_errors_and_store_nothing():
    d = fwtest.tmpdir("regmqtt")
    cap = capture_log()
    try:
        for topic, answer in (("/ext/register", "not json"), ("/ext/register", "[1]"),
                              ("/ext/register", '{"deviceSecret": 7}'),
                              ("/ext/register", '{"deviceName": "other-dev", "deviceSecret": "%s"}' % DS),
                              ("/ext/regnwl", '{"clientId": "a|b", "deviceToken": "%s"}' % TOKEN),
                              ("/ext/regnwl", '{"clientId": "%s", "deviceToken": "t\\"x"}' % CID),
                              ("/ext/regnwl", '{"clientId": "%s"}' % CID)):
            c = cfg(d, register="mqtt_nwl" if topic == "/ext/regnwl" else "mqtt")
            e = raises(CloudError, register.register, Modem(topic, answer), c, RND)
            assert "not a JSON object" in str(e) or "not usable" in str(e) or "another device" in str(e), str(e)
            assert os.listdir(d) == [] and not c.get("device_secret") and not c.get("device_token")
        assert DS not in cap.text() and TOKEN not in cap.text()
    finally:
        release_log()
        rmtree(d)


def test_a_message_on_another_topic_is_not_an_answer():
    d = fwtest.tmpdir("regmqtt")
    try:
        e = raises(ModemError, register.register, Modem("/ext/other", '{"deviceSecret": "%s"}' % DS), cfg(d), RND)
        assert e.kind == "cloud" and "no answer on /ext/register" in str(e) and os.listdir(d) == []
    finally:
        rmtree(d)


def test_a_refusal_is_explained_and_retried_slowly():
    d = fwtest.tmpdir("regmqtt")
    cap = capture_log()
    try:
        c = cfg(d)
        e = raises(CloudError, register.register, Modem(refuse=True), c, RND)
        assert e.code == register.MQTT_REFUSED
        help_line = [x for x in cap.lines if "the platform refused the registration of %s/%s" % (PK, DN) in x]
        assert help_line and "not active already" in help_line[0] and "check product_secret" in help_line[0]
        tries = []
        m = Modem(refuse=True)
        m.start = lambda: tries.append(1)
        m.family = lambda: (0, 0, 0, 0, False)
        m.bearer_open = lambda apn: None
        assert register.provision(m, c, until=lambda: len(tries) >= 1 and len(m.connects) >= 1) is False
        assert any("next registration attempt in 600 s" in x for x in cap.lines)  # backoff_refused_ms
    finally:
        release_log()
        rmtree(d)


def test_config_register_field():
    d = fwtest.tmpdir("regmqtt")
    try:
        assert cfg(d, register="https")["register"] == "https"
        assert config.check({"product_key": PK, "device_name": DN, "device_secret": DS, "tls_verify": False})["register"] == "https"
        for kw, words in (({"register": "mqtts"}, "is not one of https, mqtt, mqtt_nwl"),
                          ({"register": "mqtt_nwl", "auth": "http"}, "needs \"auth\": \"mqtt\" and \"tls\": true"),
                          ({"register": "mqtt_nwl", "tls": False}, "needs \"auth\": \"mqtt\"")):
            e = raises(config.ConfigError, cfg, d, **kw)
            assert e.field == "register" and words in str(e), str(e)
    finally:
        rmtree(d)
