# Where the device connects (firmware/aliyun.py mqtt_host / auth_host, their one home):
# the previous public instances by ProductKey and region, an instance (instance_id) by its
# own names, and the mqtt_host / auth_host overrides above both; instance_id checked at
# load. Through the driver and the stub UART, byte for byte. Runs under both interpreters.
from fwtest import StubUART, raises

from firmware import auth, config, sign
from firmware.air72x import Air72x
from firmware.aliyun import Topics, auth_host, connect, credentials, mqtt_host
from firmware.auth import auth_url

PK, DN, DS = "b0FMK1Ga5cp", "862991419835241", "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
IID = "iot-06z00ax1o4qq2ly"
OK = b"\r\nOK\r\n"


def cfg(**kw):
    c = {"product_key": PK, "device_name": DN, "device_secret": DS, "client_id": DN}
    c.update(kw)
    return config.check(c)


def test_previous_public_instance_hosts_by_product_key_and_region():
    c = cfg(region="cn-beijing")
    assert mqtt_host(c) == "b0FMK1Ga5cp.iot-as-mqtt.cn-beijing.aliyuncs.com"
    assert auth_host(c) == "iot-auth.cn-beijing.aliyuncs.com"
    assert auth_url(c, "/auth/register/device") == "https://iot-auth.cn-beijing.aliyuncs.com/auth/register/device"


def test_instance_hosts_whatever_the_region():
    c = cfg(instance_id=IID, region="cn-beijing")
    assert mqtt_host(c) == IID + ".mqtt.iothub.aliyuncs.com"
    assert auth_host(c) == IID + ".auth.iothub.aliyuncs.com"
    assert auth_url(c) == "https://%s.auth.iothub.aliyuncs.com/auth/devicename" % IID
    assert auth_url(c, "/auth/register/device") == "https://%s.auth.iothub.aliyuncs.com/auth/register/device" % IID


def test_overrides_win_over_the_instance():
    c = cfg(instance_id=IID, mqtt_host="mqtt.example.com", auth_host="auth.example.com")
    assert mqtt_host(c) == "mqtt.example.com" and auth_host(c) == "auth.example.com"
    c = cfg(instance_id=IID, mqtt_host="mqtt.example.com")
    assert auth_host(c) == IID + ".auth.iothub.aliyuncs.com"


def test_http_flow_token_host_rules_with_an_instance():
    c = cfg(instance_id=IID, auth="http")
    # the platform named no MQTT server: the instance's
    assert credentials_from(c, None) == (DN, "id", "tok", IID + ".mqtt.iothub.aliyuncs.com", 1883)
    # the platform named one: that one
    assert credentials_from(c, ("h.example", 8883)) == (DN, "id", "tok", "h.example", 8883)
    # config.json names one: that one, always
    c = cfg(instance_id=IID, auth="http", mqtt_host="m.example")
    assert credentials_from(c, ("h.example", 8883)) == (DN, "id", "tok", "m.example", 1883)


def credentials_from(c, named):
    from firmware.aliyun import token_credentials

    host, port = named or (None, None)
    return token_credentials(c, ("id", "tok", host, port))


def test_direct_flow_connects_to_the_instance_host_byte_for_byte():
    c = cfg(instance_id=IID, tls=False)
    cid, user, pw = sign.mqtt_credentials(PK, DN, DS, DN, "hmacsha256", securemode=3)
    script = [
        (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
        (b'AT+SAPBR=3,1,"APN","CMIIOT"\r', OK),
        (b"AT+SAPBR=1,1\r", OK),
        (b"AT+SAPBR=2,1\r", b'\r\n+SAPBR: 1,1,"10.1.2.3"\r\n' + OK),
        (b'AT+MCONFIG="%s","%s","%s"\r' % (cid.encode(), user.encode(), pw.encode()), OK),
        (b'AT+MIPSTART="iot-06z00ax1o4qq2ly.mqtt.iothub.aliyuncs.com",1883\r', OK + b"\r\nCONNECT OK\r\n"),
        (b"AT+MCONNECT=1,300\r", OK + b"\r\nCONNACK OK\r\n"),
        (b"AT+MQTTMSGSET=0\r", OK),
        (b'AT+MSUB="/b0FMK1Ga5cp/862991419835241/user/get",0\r', OK + b"\r\nSUBACK\r\n"),
    ]
    uart = StubUART(script)
    m = Air72x(uart)
    connect(m, c, Topics(PK, DN))
    assert uart.done() and m.mqtt_connected
    assert credentials(m, c)[3] == IID + ".mqtt.iothub.aliyuncs.com"


def test_http_flow_posts_to_the_instance_auth_host():
    c = cfg(instance_id=IID, auth="http", sign_method="hmacmd5")
    body = auth.auth_form(PK, DN, DS, DN, "hmacmd5").encode() + b"&resources=mqtt"
    reply = b'{"code":200,"data":{"iotId":"id1","iotToken":"tok1"},"message":"success"}'
    script = [
        (b"AT+HTTPINIT\r", OK),
        (b'AT+HTTPPARA="URL","https://iot-06z00ax1o4qq2ly.auth.iothub.aliyuncs.com/auth/devicename"\r', OK),
        (b'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"\r', OK),
        (b"AT+HTTPDATA=%d,20000\r" % len(body), b"\r\nDOWNLOAD\r\n"),
        (body, OK),
        (b"AT+HTTPACTION=1\r", OK + b"\r\n+HTTPACTION: 1,200,%d\r\n" % len(reply)),
        (b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: %d\r\n" % len(reply) + reply + OK),
        (b"AT+HTTPTERM\r", OK),
    ]
    uart = StubUART(script)
    assert credentials(Air72x(uart), c) == (DN, "id1", "tok1", IID + ".mqtt.iothub.aliyuncs.com", 1883)
    assert uart.done()


def test_instance_id_checked_at_load():
    assert cfg()["instance_id"] is None
    assert cfg(instance_id=IID)["instance_id"] == IID
    for bad, why in ((7, "not a non-empty string"), ("", "not a non-empty string"),
                     ("iot_instc_pu_a1b2", "previous public instance"), ("iot-06z00.x", "holds '.'"),
                     ("iot 06", "holds ' '"), ('iot"', "holds"), ("i" * 64, "64 characters"),
                     ("-iot-06", "'-' at an end"), ("iot-06-", "'-' at an end")):
        e = raises(config.ConfigError, cfg, instance_id=bad)
        assert e.field == "instance_id" and "instance_id" in str(e) and why in str(e), (bad, str(e))
