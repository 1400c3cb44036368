"""Dynamic registration over MQTT in the local cloud, as the platform defines it (Aliyun IoT's
"MQTT-based dynamic registration"; docs/aliyun.md, section 5):

  CONNECT clientId "{id}|securemode=2|-2,authType=register|regnwl,random=R,signmethod=M[,instanceId=I]|"
          username "{dn}&{pk}", password HMAC_M(productSecret, "deviceName{dn}productKey{pk}random{R}"),
          over TLS only (the keepalive is not checked)
  register  (the device was added in the console and is not active yet):
            CONNACK 0, a PUBLISH on /ext/register {"productKey","deviceName","deviceSecret"}
  regnwl    (no pre-registration: the device is made if it is not there):
            CONNACK 0, a PUBLISH on /ext/regnwl {"clientId","productKey","deviceName","deviceToken"}
  then the connection is closed. A refusal is a CONNACK code and a close: 4 for a malformed
  request, 5 for a wrong sign, a product without dynamic registration, a device that is not
  there (register) or already active (register), plain TCP.
  connwl    a device registered by regnwl logs in with clientId "{clientId}|securemode=-2,
            authType=connwl|", username "{dn}&{pk}" and the deviceToken as the password
            (check_connwl, asked by auth.check_connect).

Independent of the firmware (never imports firmware/); the sign rule is auth.py's. The
broker (broker.py) asks login() for every CONNECT before its own checks.
"""
import hmac
import json

from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.publish import PublishPacket

from tools.cloud.auth import (RC_BAD_USER_PASS, RC_CLIENT_ID, RC_NOT_AUTHORISED, RC_OK, SIGN_METHODS,
                              parse_direct_client_id, sign_ok)
from tools.cloud.registry import random_id

KINDS = ("register", "regnwl")
TOKENS_KEPT = 5  # clientId/deviceToken pairs a device keeps; a newer one replaces the oldest


def login(state, client_id, username, password, tls):
    """None when this CONNECT is no registration request; else (connack rc, topic, payload
    bytes or None): what the platform answers."""
    parsed = parse_direct_client_id(client_id or "")
    if parsed is None or parsed[1].get("authType") not in KINDS:
        return None
    ident, params = parsed
    kind = params["authType"]
    state.registrations = getattr(state, "registrations", 0) + 1
    if isinstance(password, bytes):
        password = password.decode("utf-8", "replace")
    dn, _, pk = (username or "").partition("&")
    method = params.get("signmethod", "hmacmd5").lower()
    if not ident or not dn or not pk or not password or not params.get("random") or method not in SIGN_METHODS \
            or params.get("securemode") not in ("2", "-2"):
        return RC_BAD_USER_PASS, None, None
    if not tls:
        return RC_NOT_AUTHORISED, None, None  # registration is TLS only
    with state.lock:
        p = state.products.get(pk)
        if p is None or not p["dynamicRegistration"] or not p["productSecret"]:
            return RC_NOT_AUTHORISED, None, None
        signed = {"deviceName": dn, "productKey": pk, "random": params["random"]}
        if not sign_ok(method, p["productSecret"], signed, password):
            return RC_NOT_AUTHORISED, None, None
        d = state.device(pk, dn)
        if kind == "register":
            if d is None or d["active"] or not d["enabled"]:
                return RC_NOT_AUTHORISED, None, None
            if not d["deviceSecret"]:
                d["deviceSecret"] = random_id(32)
            d["active"] = True
            state.save()
            return RC_OK, "/ext/register", json.dumps(
                {"productKey": pk, "deviceName": dn, "deviceSecret": d["deviceSecret"]}).encode()
        if d is None:
            d = state.add_device({"productKey": pk, "deviceName": dn})
        if not d["enabled"]:
            return RC_NOT_AUTHORISED, None, None
        cid, token = random_id(20), random_id(32)
        tokens = d.setdefault("tokens", {})
        while len(tokens) >= TOKENS_KEPT:
            tokens.pop(next(iter(tokens)))
        tokens[cid] = token
        d["active"] = True
        state.save()
        return RC_OK, "/ext/regnwl", json.dumps(
            {"clientId": cid, "productKey": pk, "deviceName": dn, "deviceToken": token}).encode()


async def answer(writer, rc, topic, payload):
    """The platform's side of a registration: CONNACK rc, the answer (QoS 0), the close."""
    try:
        await ConnackPacket.build(0, rc).to_stream(writer)
        if rc == RC_OK:
            await PublishPacket.build(topic, payload, None, False, 0, False).to_stream(writer)
        await writer.drain()
    finally:
        await writer.close()


def check_connwl(state, ident, pk, dn, params, password, tls):
    """(connack rc, identity) of a login with a regnwl pair."""
    if params.get("securemode") != "-2" or (state.strict_securemode and not tls):
        return RC_CLIENT_ID, None
    with state.lock:
        d = state.device(pk, dn)
        token = (d or {}).get("tokens", {}).get(ident)
        if d is None or not d["enabled"] or token is None or not hmac.compare_digest(token, password):
            return RC_NOT_AUTHORISED, None
        return RC_OK, ("device", pk, dn)
