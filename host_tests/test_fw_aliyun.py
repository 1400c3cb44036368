# The two Aliyun flows through the driver and the stub UART: the seed's whole procedure,
# byte for byte, with the sign and body length computed on the device.
from fwtest import StubUART, raises

from firmware import auth, config, sign
from firmware.air72x import Air72x
from firmware.aliyun import Topics, connect, credentials, mqtt_host
from firmware.auth import auth_url, http_auth
from firmware.errors import CloudError

PK, DN, DS = "b0FMK1Ga5cp", "862991419835241", "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
OK = b"\r\nOK\r\n"


def cfg(**kw):
    c = {"product_key": PK, "device_name": DN, "device_secret": DS, "client_id": DN}
    c.update(kw)
    return config.check(c)


def modem(script):
    uart = StubUART(script)
    return uart, Air72x(uart)


def bearer_script():
    return [
        (b'AT+SAPBR=3,1,"CONTYPE","GPRS"\r', OK),
        (b'AT+SAPBR=3,1,"APN","CMIIOT"\r', OK),
        (b"AT+SAPBR=1,1\r", b"\r\n+CME ERROR: 3\r\n"),
        (b"AT+SAPBR=2,1\r", b'\r\n+SAPBR: 1,1,"10.159.1.145"\r\n' + OK),
    ]


def http_script(body, reply, status=200):
    r = reply.encode()
    return [
        (b"AT+HTTPINIT\r", OK),
        (b'AT+HTTPPARA="URL","https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"\r', OK),
        (b'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"\r', OK),
        (b"AT+HTTPDATA=%d,20000\r" % len(body), b"\r\nDOWNLOAD\r\n"),
        (body, OK),
        (b"AT+HTTPACTION=1\r", OK + b"\r\n+HTTPACTION: 1,%d,%d\r\n" % (status, len(r))),
        (b"AT+HTTPREAD\r", b"\r\n+HTTPREAD: %d\r\n" % len(r) + r + OK),
        (b"AT+HTTPTERM\r", OK),
    ]


def test_topics_have_one_home():
    t = Topics("pk", "dn")
    assert t.update == "/pk/dn/user/update" and t.get == "/pk/dn/user/get"
    assert t.update_error == "/pk/dn/user/update/error"
    assert t.property_post == "/sys/pk/dn/thing/event/property/post"
    assert t.property_post_reply == "/sys/pk/dn/thing/event/property/post_reply"
    assert t.property_set == "/sys/pk/dn/thing/service/property/set"
    assert t.event_post("alarm") == "/sys/pk/dn/thing/event/alarm/post"
    assert t.ntp_request == "/ext/ntp/pk/dn/request" and t.ntp_response == "/ext/ntp/pk/dn/response"
    assert t.ota_inform == "/ota/device/inform/pk/dn"


def test_hosts():
    c = cfg()
    assert mqtt_host(c) == "b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com"
    assert auth_url(c) == "https://iot-auth.cn-shanghai.aliyuncs.com/auth/devicename"
    c = cfg(mqtt_host="iot-06z00.mqtt.iothub.aliyuncs.com", region="cn-beijing")
    assert mqtt_host(c) == "iot-06z00.mqtt.iothub.aliyuncs.com"
    assert auth_url(c, "/auth/register/device") == "https://iot-auth.cn-beijing.aliyuncs.com/auth/register/device"


def test_http_flow_is_the_seed_procedure_with_the_right_sign():
    c = cfg(auth="http", sign_method="hmacmd5")
    body = auth.auth_form(PK, DN, DS, DN, "hmacmd5").encode() + b"&resources=mqtt"
    assert b"sign=93a4430caf5304c3442061eee892329b" in body
    assert len(body) == 112 + len(b"&resources=mqtt")
    reply = '{"code":200,"data":{"iotId":"jlvFGfQ11FIGOEJ4RoZU001013ba00","iotToken":"613d9cb0946741df98db1c50255a9dd0"},"message":"success"}'
    uart, m = modem(http_script(body, reply))
    assert http_auth(m, c) == ("jlvFGfQ11FIGOEJ4RoZU001013ba00", "613d9cb0946741df98db1c50255a9dd0", None, None)
    assert uart.done()


def test_http_flow_takes_the_mqtt_host_from_the_reply():
    c = cfg(auth="http", sign_method="hmacmd5")
    body = auth.auth_form(PK, DN, DS, DN, "hmacmd5").encode() + b"&resources=mqtt"
    reply = '{"code":200,"data":{"iotId":"id1","iotToken":"tok1","resources":{"mqtt":{"host":"h.example","port":8883}}},"message":"success"}'
    uart, m = modem(http_script(body, reply))
    assert credentials(m, c) == (DN, "id1", "tok1", "h.example", 8883)


def test_http_flow_401_names_the_code_and_its_meaning():
    c = cfg(auth="http", sign_method="hmacmd5")
    body = auth.auth_form(PK, DN, DS, DN, "hmacmd5").encode() + b"&resources=mqtt"
    reply = '{"code":401,"data":{},"message":"request auth error."}'
    uart, m = modem(http_script(body, reply))
    e = raises(CloudError, http_auth, m, c)
    assert e.code == 401 and "401" in str(e) and "bad sign" in str(e)
    assert DS not in str(e)
    assert uart.written.endswith(b"AT+HTTPTERM\r")


def test_direct_flow_connects_and_subscribes():
    c = cfg()
    cid, user, pw = sign.mqtt_credentials(PK, DN, DS, DN, "hmacsha256", securemode=2)
    assert cid == DN + "|securemode=2,signmethod=hmacsha256|" and user == DN + "&" + PK
    script = bearer_script() + [
        (b'AT+MCONFIG="%s","%s","%s"\r' % (cid.encode(), user.encode(), pw.encode()), OK),
        (b'AT+SSLMIPSTART="b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883\r', OK + b"\r\nCONNECT OK\r\n"),
        (b"AT+MCONNECT=1,300\r", OK + b"\r\nCONNACK OK\r\n"),
        (b"AT+MQTTMSGSET=0\r", OK),
        (b'AT+MSUB="/b0FMK1Ga5cp/862991419835241/user/get",0\r', OK + b"\r\nSUBACK\r\n"),
    ]
    uart, m = modem(script)
    connect(m, c, Topics(PK, DN))
    assert uart.done() and m.mqtt_connected


def test_direct_flow_over_tcp_uses_securemode_3_and_mipstart():
    c = cfg(tls=False, sign_method="hmacsha1", keepalive=120)
    cid, user, pw = sign.mqtt_credentials(PK, DN, DS, DN, "hmacsha1", securemode=3)
    script = bearer_script() + [
        (b'AT+MCONFIG="%s","%s","%s"\r' % (cid.encode(), user.encode(), pw.encode()), OK),
        (b'AT+MIPSTART="b0FMK1Ga5cp.iot-as-mqtt.cn-shanghai.aliyuncs.com",1883\r', OK + b"\r\nCONNECT OK\r\n"),
        (b"AT+MCONNECT=1,120\r", OK + b"\r\nCONNACK OK\r\n"),
        (b"AT+MQTTMSGSET=0\r", OK),
        (b'AT+MSUB="/b0FMK1Ga5cp/862991419835241/user/get",0\r', OK + b"\r\nSUBACK\r\n"),
    ]
    uart, m = modem(script)
    connect(m, c, Topics(PK, DN))
    assert b"securemode=3,signmethod=hmacsha1|" in uart.written
