# Tests of the local Aliyun (tools/cloud/): auth endpoint, broker logins, ACL, console API,
# and the official Aliyun Python SDK (linkkit) against it. Devices are paho-mqtt clients.
import contextlib
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from tools.cloud.api import LocalCloud
from tools.cloud.auth import hmac_hex
from tools.proc import stop as stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PK, DN, DS = "a1TestPk001", "dev-1", "Secret0123456789abcdefABCDEF0001"
DN2, DS2 = "dev-2", "Secret0123456789abcdefABCDEF0002"
DYN_PK, DYN_PS = "a1DynPk0001", "ProdSecret0123456789abcdef000001"
NODYN_PK = "a1NoDynPk01"
DEVICES = [{"productKey": PK, "deviceName": DN, "deviceSecret": DS},
           {"productKey": PK, "deviceName": DN2, "deviceSecret": DS2}]
PRODUCTS = [{"productKey": DYN_PK, "productSecret": DYN_PS, "dynamicRegistration": True},
            {"productKey": NODYN_PK, "productSecret": DYN_PS, "dynamicRegistration": False}]
HASH = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}


@pytest.fixture(scope="module")
def cloud():
    c = LocalCloud(devices=DEVICES, products=PRODUCTS)
    c.start()
    yield c
    c.stop()


def sign(secret, params, method="hmacmd5"):
    content = "".join(k + params[k] for k in sorted(params))
    return hmac.new(secret.encode(), content.encode(), HASH[method]).hexdigest()


def post(url, form, ctype="application/x-www-form-urlencoded"):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                 headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def auth_form(pk=PK, dn=DN, ds=DS, method=None, client_id="imei-1", timestamp="1700000000000", **extra):
    f = {"productKey": pk, "deviceName": dn, "clientId": client_id}
    if timestamp:
        f["timestamp"] = timestamp
    f["sign"] = sign(ds, f, method or "hmacmd5")
    if method:
        f["signmethod"] = method
    f.update(extra)
    return f


def direct(pk=PK, dn=DN, ds=DS, method="hmacsha256", ts=None, securemode=3, ident="imei-1"):
    """(clientId, username, password) per docs/aliyun.md section 3."""
    params = {"clientId": ident, "deviceName": dn, "productKey": pk}
    opts = "securemode=%d,signmethod=%s" % (securemode, method)
    if ts is not None:
        params["timestamp"] = ts
        opts += ",timestamp=" + ts
    return "%s|%s|" % (ident, opts), "%s&%s" % (dn, pk), sign(ds, params, method)


class Dev:
    """A paho device client with a recorded CONNACK code and received messages."""

    def __init__(self, cloud, client_id, username, password, tls=False, keepalive=60):
        self.rc = None
        self.connected = threading.Event()
        self.done = threading.Event()
        self.messages = []
        self.subacks = []
        self.disconnected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set(ca_certs=cloud.ca_file)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.qos))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append([r.value for r in rcs])
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.c.connect("127.0.0.1", cloud.mqtts_port if tls else cloud.mqtt_port, keepalive)
        self.c.loop_start()
        self.done.wait(5)

    def _on_connect(self, c, u, flags, rc, props):
        self.rc = rc.value if hasattr(rc, "value") else rc
        if self.rc == 0:
            self.disconnected.clear()
            self.connected.set()
        self.done.set()

    def subscribe(self, topic, qos=1):
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        wait_for(lambda: len(self.subacks) > n)
        return self.subacks[-1][0]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def connack(cloud, client_id, username, password, tls=False, keepalive=60, port=None):
    """The CONNACK return code byte as sent on the wire (paho 2 maps 3.1.1 codes to v5
    reason codes, so this builds the MQTT 3.1.1 CONNECT itself)."""
    def s(v):
        b = v.encode()
        return len(b).to_bytes(2, "big") + b
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = s("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + s(client_id)
    body += (s(username) if username else b"") + (s(password) if password else b"")
    port = port or (cloud.mqtts_port if tls else cloud.mqtt_port)
    sock = socket.create_connection(("127.0.0.1", port), 5)
    if tls:
        sock = ssl.create_default_context(cafile=cloud.ca_file).wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        n, rl = len(body), b""
        while True:  # remaining length: 7-bit groups, continuation bit
            n, d = n >> 7, n & 0x7F
            rl += bytes([d | (0x80 if n else 0)])
            if not n:
                break
        sock.sendall(b"\x10" + rl + body)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            assert chunk, "connection closed without CONNACK"
            ack += chunk
        assert ack[:2] == b"\x20\x02"
        if ack[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return ack[3]
    finally:
        sock.close()


# -- sign rule sanity (published check values, docs/aliyun.md section 2) ------------------------
def test_published_sign_values():
    content = "clientId12345deviceNamedeviceproductKeypktimestamp789"
    assert hmac_hex("hmacsha1", "secret", content).upper() == "FAFD82A3D602B37FB0FA8B7892F24A477F851A14"
    assert hmac_hex("hmacmd5", "secret", content).upper() == "14B198324FE55E1D3C88F2E705E201EE"
    assert hmac_hex("hmacmd5", "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q",
                    "clientId862991419835241deviceName862991419835241productKeyb0FMK1Ga5cp") \
        == "93a4430caf5304c3442061eee892329b"


# -- Flow A: /auth/devicename ------------------------------------------------------------------
@pytest.mark.parametrize("method", [None, "hmacmd5", "hmacsha1", "hmacsha256"])
def test_auth_accepts_correct_sign(cloud, method):
    r = post(cloud.auth_url + "/auth/devicename", auth_form(method=method, resources="mqtt", version="default"))
    assert r["code"] == 200 and r["message"] == "success"
    assert r["data"]["iotId"] and len(r["data"]["iotToken"]) >= 16
    assert r["data"]["resources"]["mqtt"] == {"host": PK + ".iot-as-mqtt.cn-shanghai.aliyuncs.com", "port": 1883}


def test_auth_upper_case_sign_no_timestamp_no_resources(cloud):
    f = auth_form(timestamp=None)
    f["sign"] = f["sign"].upper()
    r = post(cloud.auth_url + "/auth/devicename", f)
    assert r["code"] == 200 and "resources" not in r["data"]


def test_auth_rejects_wrong_sign(cloud):
    r = post(cloud.auth_url + "/auth/devicename", auth_form(ds="not-the-secret"))
    assert r["code"] == 401 and set(r) == {"code", "data", "message"}


def test_auth_unknown_device(cloud):
    r = post(cloud.auth_url + "/auth/devicename", auth_form(dn="nobody"))
    assert r["code"] == 5001


@pytest.mark.parametrize("mutate", ["drop_clientId", "drop_sign", "drop_productKey", "long_clientId",
                                    "bad_method", "json_body"])
def test_auth_bad_parameters(cloud, mutate):
    f = auth_form(client_id="x" * 65 if mutate == "long_clientId" else "imei-1")
    ctype = "application/x-www-form-urlencoded"
    if mutate.startswith("drop_"):
        del f[mutate[5:]]
    if mutate == "bad_method":
        f["signmethod"] = "hmacsha512"
    if mutate == "json_body":
        ctype = "application/json"
    assert post(cloud.auth_url + "/auth/devicename", f, ctype)["code"] == 460


# -- Flow C: /auth/register/device -------------------------------------------------------------
def reg_form(pk, dn, ps=DYN_PS, method="hmacsha256", rnd="r4nd0m"):
    f = {"productKey": pk, "deviceName": dn, "random": rnd}
    f["sign"] = sign(ps, f, method)
    f["signMethod"] = method
    return f


def test_dynamic_registration_flow(cloud):
    url = cloud.auth_url + "/auth/register/device"
    assert post(url, reg_form(DYN_PK, "new-dev", ps="wrong-secret"))["code"] == 6600
    r = post(url, reg_form(DYN_PK, "new-dev"))
    assert r["code"] == 200, r
    ds = r["data"]["deviceSecret"]
    assert r["data"]["productKey"] == DYN_PK and r["data"]["deviceName"] == "new-dev" and len(ds) >= 16
    assert post(url, reg_form(DYN_PK, "new-dev", rnd="other"))["code"] == 6289
    assert post(url, reg_form(NODYN_PK, "x"))["code"] == 6288
    f = reg_form(DYN_PK, "y")
    del f["random"]
    assert post(url, f)["code"] == 460
    # the registered device can now log in, both ways
    d = Dev(cloud, *direct(pk=DYN_PK, dn="new-dev", ds=ds))
    assert d.rc == 0
    d.close()
    assert post(cloud.auth_url + "/auth/devicename", auth_form(pk=DYN_PK, dn="new-dev", ds=ds))["code"] == 200


# -- Flow B: direct MQTT login ------------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
@pytest.mark.parametrize("ts", [None, "1700000000123"], ids=["nots", "ts"])
def test_direct_login_accepted(cloud, tls, method, ts):
    d = Dev(cloud, *direct(method=method, ts=ts, securemode=2 if tls else 3), tls=tls)
    try:
        assert d.rc == 0
        assert cloud.online(PK, DN)
    finally:
        d.close()


def test_direct_login_upper_case_password(cloud):
    cid, user, pw = direct(method="hmacsha1")
    assert connack(cloud, cid, user, pw.upper()) == 0


def test_direct_login_refusals(cloud):
    cid, user, pw = direct()
    assert connack(cloud, *direct(ds="wrong-secret")) == 5  # wrong triple: not authorised
    assert connack(cloud, *direct(dn="nobody")) == 5  # unknown device
    assert connack(cloud, cid, user, "zz-not-hex") == 4  # password format
    assert connack(cloud, cid, "", pw) == 4  # no username
    assert connack(cloud, "imei-1", user, pw) == 2  # clientId without |...|
    assert connack(cloud, "imei-1|securemode=3,signmethod=hmacsha512|", user, pw) == 2
    assert connack(cloud, "x" * 65 + "|securemode=3,signmethod=hmacsha256|", user, pw) == 2
    assert connack(cloud, *direct(securemode=2)) == 2  # securemode 2 means TLS
    assert connack(cloud, cid, user, pw, keepalive=10) == 3  # keepalive outside 30..1200
    assert connack(cloud, cid, user, pw, keepalive=1300) == 3
    assert connack(cloud, cid, user, pw, keepalive=30) == 0
    assert connack(cloud, *direct(securemode=3), tls=True) == 2


def test_plain_port_also_takes_tls_like_aliyun_1883(cloud):
    """Aliyun's port 1883 serves TLS and TCP alike."""
    assert connack(cloud, *direct(securemode=2), tls=True, port=cloud.mqtt_port) == 0
    assert connack(cloud, *direct(securemode=3), port=cloud.mqtt_port) == 0
    assert connack(cloud, *direct(securemode=3), tls=True, port=cloud.mqtt_port) == 2
    assert connack(cloud, *direct(ds="wrong", securemode=2), tls=True, port=cloud.mqtt_port) == 5
    r = post(cloud.auth_url + "/auth/devicename", auth_form(resources="mqtt"))["data"]
    assert connack(cloud, "cid", r["iotId"], r["iotToken"], tls=True, port=cloud.mqtt_port) == 0
    assert connack(cloud, "cid", r["iotId"], r["iotToken"], port=cloud.mqtt_port) == 0
    raw = socket.create_connection(("127.0.0.1", cloud.mqtt_port), 5)  # silent or junk peers
    raw.sendall(b"\x16junk-not-a-client-hello")
    raw.close()
    assert connack(cloud, *direct(), port=cloud.mqtt_port) == 0


def test_wrong_login_does_not_disturb_the_connected_device(cloud):
    d = Dev(cloud, *direct())
    try:
        cid, user, _ = direct()
        assert connack(cloud, cid, user, "00" * 32) == 5
        time.sleep(0.2)
        assert d.c.is_connected() and cloud.online(PK, DN)
    finally:
        d.close()


# -- token login (Flow A then MQTT) ----------------------------------------------------------------
def test_token_login_and_expiry():
    with LocalCloud(devices=DEVICES, resources="local") as c:
        r = post(c.auth_url + "/auth/devicename", auth_form(resources="mqtt"))["data"]
        assert r["resources"]["mqtt"] == {"host": "127.0.0.1", "port": c.mqtt_port}
        assert connack(c, "any-client-id", r["iotId"], r["iotToken"]) == 0
        assert connack(c, "any-client-id", r["iotId"], "0" * 32) == 3
        assert connack(c, "any-client-id", "unknown-iot-id", r["iotToken"]) == 3
        c.restart_broker()  # tokens survive a broker restart
        assert connack(c, "other-id", r["iotId"], r["iotToken"]) == 0
        c.advance_clock(7 * 24 * 3600 - 60)
        assert connack(c, "other-id", r["iotId"], r["iotToken"]) == 0
        c.advance_clock(120)  # past 7 days
        assert connack(c, "other-id", r["iotId"], r["iotToken"]) == 3


def test_state_dir_keeps_tokens_and_registrations_across_cloud_restarts(tmp_path):
    with LocalCloud(devices=DEVICES, products=PRODUCTS, state_dir=str(tmp_path)) as c:
        tok = post(c.auth_url + "/auth/devicename", auth_form())["data"]
        reg = post(c.auth_url + "/auth/register/device", reg_form(DYN_PK, "persisted"))["data"]
    with LocalCloud(devices=DEVICES, products=PRODUCTS, state_dir=str(tmp_path)) as c:
        assert connack(c, "cid", tok["iotId"], tok["iotToken"]) == 0
        assert connack(c, *direct(pk=DYN_PK, dn="persisted", ds=reg["deviceSecret"])) == 0
        assert post(c.auth_url + "/auth/register/device", reg_form(DYN_PK, "persisted"))["code"] == 6289


# -- topics, uplinks, downlinks --------------------------------------------------------------------
def test_acl_uplinks_and_downlinks(cloud):
    a = Dev(cloud, *direct())
    b = Dev(cloud, *direct(dn=DN2, ds=DS2, ident="imei-2"))
    try:
        assert a.rc == 0 and b.rc == 0
        # subscribe: own topics yes, others' no (SUBACK 0x80)
        assert a.subscribe("/%s/%s/user/get" % (PK, DN)) == 1
        assert a.subscribe("/sys/%s/%s/thing/service/property/set" % (PK, DN)) == 1
        assert a.subscribe("/ext/ntp/%s/%s/response" % (PK, DN), qos=0) == 0
        assert a.subscribe("/ota/device/upgrade/%s/%s" % (PK, DN), qos=2) == 1  # QoS 2: granted 1
        assert a.subscribe("/%s/%s/user/get" % (PK, DN2)) == 128
        assert a.subscribe("/sys/%s/+/thing/#" % PK) == 128
        assert a.subscribe("#") == 128
        assert b.subscribe("/%s/%s/user/get" % (PK, DN2)) == 1
        n = len(cloud.uplinks())
        # publish to another device's topic: not delivered, not recorded
        a.c.publish("/%s/%s/user/get" % (PK, DN2), b"intrusion", qos=1).wait_for_publish(5)
        # own topics: recorded with the QoS the device used
        a.c.publish("/%s/%s/user/update" % (PK, DN), b"hello-0", qos=0)
        a.c.publish("/sys/%s/%s/thing/event/property/post" % (PK, DN), b'{"id":"1"}', qos=1)
        u = cloud.wait_uplink(lambda t, p: p == b'{"id":"1"}', since=n)
        assert u == ("/sys/%s/%s/thing/event/property/post" % (PK, DN), b'{"id":"1"}', 1)
        mine = cloud.uplinks()[n:]
        assert ("/%s/%s/user/update" % (PK, DN), b"hello-0", 0) in mine
        assert all(p != b"intrusion" for _, p, _ in mine)
        assert cloud.uplinks(topic="/%s/%s/user/update" % (PK, DN))[-1][1] == b"hello-0"
        assert cloud.uplinks(topic="/sys/%s/+/thing/#" % PK)[-1][1] == b'{"id":"1"}'
        # console downlinks reach the subscribed device, at min(published, granted) QoS
        cloud.publish("/%s/%s/user/get" % (PK, DN), b"down-0")
        cloud.publish("/%s/%s/user/get" % (PK, DN), "down-1", qos=1)
        wait_for(lambda: len(a.messages) >= 2)
        assert a.messages[:2] == [("/%s/%s/user/get" % (PK, DN), b"down-0", 0),
                                  ("/%s/%s/user/get" % (PK, DN), b"down-1", 1)]
        time.sleep(0.2)
        assert b.messages == []  # neither the intrusion nor a's downlinks
        with pytest.raises(TimeoutError):
            cloud.wait_uplink(lambda t, p: p == b"never", timeout=0.2)
    finally:
        a.close()
        b.close()


def test_second_login_forces_first_offline_and_kick(cloud):
    first = Dev(cloud, *direct(ident="conn-1"))
    assert first.rc == 0
    second = Dev(cloud, *direct(ident="conn-2", method="hmacsha1"))
    try:
        assert second.rc == 0
        assert first.disconnected.wait(5)
        first.c.loop_stop()
        assert second.c.is_connected() and cloud.online(PK, DN)
        second.c.reconnect_delay_set(30, 60)  # stay off after the kick
        assert cloud.kick(PK, DN) == 1
        assert second.disconnected.wait(5)
        wait_for(lambda: not cloud.online(PK, DN))
    finally:
        first.close()
        second.close()


def test_restart_broker_drops_connections_and_comes_back(cloud):
    d = Dev(cloud, *direct(), tls=False)
    assert d.rc == 0
    d.c.reconnect_delay_set(1, 1)
    ports = (cloud.mqtt_port, cloud.mqtts_port)
    cloud.restart_broker()
    assert d.disconnected.wait(5)
    try:
        d.connected.clear()
        assert d.connected.wait(10)  # paho reconnects to the same port
        assert (cloud.mqtt_port, cloud.mqtts_port) == ports
        assert d.subscribe("/%s/%s/user/get" % (PK, DN)) == 1
        cloud.publish("/%s/%s/user/get" % (PK, DN), b"after-restart")
        wait_for(lambda: any(m[1] == b"after-restart" for m in d.messages))
        assert connack(cloud, *direct(securemode=2), tls=True) == 0
    finally:
        d.close()


def test_broker_crash_cuts_every_connection_and_comes_back(cloud):
    # as when the broker process dies: no goodbye, but no connection may outlive it (a
    # leftover one would go on PUBACKing publishes that no broker delivers)
    plain = Dev(cloud, *direct(ident="conn-plain"), tls=False)
    tls = Dev(cloud, *direct(pk=PK, dn=DN2, ds=DS2, securemode=2, ident="conn-tls"), tls=True)
    try:
        assert plain.rc == 0 and tls.rc == 0
        for d in (plain, tls):
            d.c.reconnect_delay_set(1, 1)
            d.connected.clear()
        cloud.restart_broker(crash=True)
        assert plain.disconnected.wait(5) and tls.disconnected.wait(5)
        assert plain.connected.wait(10) and tls.connected.wait(10)
        assert plain.subscribe("/%s/%s/user/get" % (PK, DN)) == 1
        cloud.publish("/%s/%s/user/get" % (PK, DN), b"after-crash")
        wait_for(lambda: any(m[1] == b"after-crash" for m in plain.messages))
        wait_for(lambda: cloud.online(PK, DN) and cloud.online(PK, DN2))
    finally:
        plain.close()
        tls.close()


def test_kick_that_does_not_finish_aborts_the_connection():
    # a kick asks amqtt to close the session; when that never completes (amqtt stuck), the
    # TCP connection must still be cut, else the device stays on a session nobody serves
    import asyncio

    from amqtt.adapters import StreamWriterAdapter

    from tools.cloud.broker import AliyunBroker, _Live

    class Handler:  # amqtt's handler: closes the session, then the broker marks it done
        def __init__(self, finishes):
            self.finishes = finishes
            self.live = None

        async def handle_connection_closed(self):
            if self.finishes:
                self.live.done.set()

    async def kick(finishes):
        accepted = asyncio.Queue()
        server = await asyncio.start_server(lambda r, w: accepted.put_nowait(w), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        handler = Handler(finishes)
        live = _Live(session=types.SimpleNamespace(client_id="kick-test"), identity=("device", PK, DN),
                     handler=handler, writer=StreamWriterAdapter(await accepted.get()))
        handler.live = live
        await AliyunBroker._kick(None, live, wait=0.3)
        try:  # what the device sees: the connection closed (EOF or reset), or still open
            got = "closed" if await asyncio.wait_for(reader.read(1), 0.5) == b"" else "data"
        except ConnectionResetError:
            got = "closed"
        except asyncio.TimeoutError:
            got = "open"
        writer.close()
        server.close()
        return got

    assert asyncio.run(kick(finishes=False)) == "closed"
    assert asyncio.run(kick(finishes=True)) == "open"  # a kick that completes is left to amqtt: no abort


# -- console CLI ----------------------------------------------------------------------------------
def test_console_cli_watch_and_publish(cloud):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    w = subprocess.Popen([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir, "watch", PK, DN],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    d = Dev(cloud, *direct())
    try:
        assert "watching" in w.stdout.readline()
        assert d.subscribe("/%s/%s/user/get" % (PK, DN)) == 1
        d.c.publish("/%s/%s/user/update" % (PK, DN), b"temp=21.5", qos=1)
        line = w.stdout.readline()
        assert "qos1 /%s/%s/user/update temp=21.5" % (PK, DN) in line
        out = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir, "publish",
                              "/%s/%s/user/get" % (PK, DN), "from-cli", "--qos", "1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: any(m[1] == b"from-cli" for m in d.messages))
    finally:
        d.close()
        w.terminate()
        w.wait(10)
        w.stdout.close()


@contextlib.contextmanager
def cloud_script(state_dir):
    """`python -m tools.cloud` on the demo registry; SIGTERM afterwards must be a clean exit."""
    p = subprocess.Popen([sys.executable, "-m", "tools.cloud", "--registry", "tools/cloud/demo_devices.json",
                          "--state", str(state_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        assert stop_process(p, 15) == 0
        p.stdout.close()


def test_cloud_script_runs_demo_registry(tmp_path):
    with cloud_script(tmp_path) as p:
        line = p.stdout.readline()
        assert "mqtt tcp 127.0.0.1:" in line and "auth http://127.0.0.1:" in line
        info = json.load(open(tmp_path / "cloud.json"))
        f = auth_form(pk="b0FMK1Ga5cp", dn="862991419835241", ds="y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q")
        assert post(info["auth_url"] + "/auth/devicename", f)["code"] == 200
    assert not (tmp_path / "cloud.json").exists()


def test_cloud_script_stops_cleanly_on_sigterm_right_after_its_banner(tmp_path):
    # a script that waits for the banner and stops the cloud at once must get a clean exit
    # (state saved, cloud.json removed), not a death by the default SIGTERM action
    with cloud_script(tmp_path) as p:
        assert "local aliyun: auth" in p.stdout.readline()
    assert not (tmp_path / "cloud.json").exists()
    assert (tmp_path / "state.json").exists()


# -- the official Aliyun Python SDK ----------------------------------------------------------------
_PahoClient = mqtt.Client  # linkkit's `mqtt.Client` is patched below; keep the real class


class _PahoForLinkkit(_PahoClient):
    """linkkit 1.2.13 calls Client.loop(timeout, max_packets), an argument paho 2.x dropped
    (paho 1.x ignored it: "not currently used"). Also records every CONNACK code."""

    connacks = []

    def loop(self, timeout=1.0, max_packets=1):
        return super().loop(timeout)

    @property
    def on_connect(self):
        return _PahoClient.on_connect.fget(self)

    @on_connect.setter
    def on_connect(self, func):
        def spy(client, userdata, flags, rc, *rest):
            _PahoForLinkkit.connacks.append(int(getattr(rc, "value", rc)))
            return func(client, userdata, flags, rc, *rest)
        _PahoClient.on_connect.fset(self, spy)


@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated")
@pytest.mark.parametrize("secure", ["TLS", ""], ids=["tls", "tcp"])
@pytest.mark.parametrize("good", [True, False], ids=["right-secret", "wrong-secret"])
def test_official_linkkit_sdk(cloud, monkeypatch, secure, good):
    from linkkit import linkkit

    monkeypatch.setattr(linkkit.mqtt, "Client", _PahoForLinkkit)
    _PahoForLinkkit.connacks = []
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=PK, device_name=DN,
                         device_secret=DS if good else "wrong-secret")
    with open(cloud.ca_file) as f:
        ca = f.read()
    lk.config_mqtt(port=cloud.mqtts_port if secure else cloud.mqtt_port, secure=secure,
                   cadata=ca if secure else None)  # the SDK checks the hostname (127.0.0.1 in SAN)
    connected = threading.Event()
    lk.on_connect = lambda session_flag, rc, userdata: rc == 0 and connected.set()
    try:
        lk.connect_async()
        if good:
            assert connected.wait(10)
            assert _PahoForLinkkit.connacks[0] == 0
            assert cloud.online(PK, DN)
            n = len(cloud.uplinks())
            rc, _ = lk.publish_topic("/%s/%s/user/update" % (PK, DN), '{"sdk":"linkkit"}', qos=1)
            assert rc == 0
            assert cloud.wait_uplink(lambda t, p: p == b'{"sdk":"linkkit"}', since=n)[2] == 1
        else:
            wait_for(lambda: _PahoForLinkkit.connacks, 10)
            assert _PahoForLinkkit.connacks[0] == 5  # CONNACK 5: not authorised
            assert not connected.is_set()
    finally:  # destruct() joins SDK threads; never let a broken SDK hang the suite
        t = threading.Thread(target=lk.destruct, daemon=True)
        t.start()
        t.join(10)
