# Aliyun IoT on top of the driver: where the servers are, the topic names (their only
# home), and the two connection flows of the seed walkthrough:
#   "http": sign with auth_form, POST /auth/devicename, MQTT with iotId / iotToken
#           (firmware/auth.py, imported only by this flow);
#   "mqtt": the direct-sign triple from mqtt_credentials.
# Both need the bearer (AT+SAPBR) open first. Then connect, subscribe /{pk}/{dn}/user/get.
import json

from firmware import log
from firmware.port import drop

_TAG = "aliyun"
TOKEN_LIFE_S = 7 * 24 * 3600  # an iotToken lives 7 days
SIGN_METHODS = ("hmacmd5", "hmacsha1", "hmacsha256")  # the sign methods the platform knows


def client_id(cfg):
    """The MQTT client id of a config: its own, or "{product_key}.{device_name}"."""
    return cfg.get("client_id") or "%s.%s" % (cfg["product_key"], cfg["device_name"])


class Topics:
    """Every topic a device uses, built once from its ProductKey and DeviceName."""

    def __init__(self, pk, dn):
        base = "/%s/%s" % (pk, dn)
        sys_ = "/sys" + base
        self.update = base + "/user/update"
        self.update_error = base + "/user/update/error"
        self.get = base + "/user/get"
        self.property_post = sys_ + "/thing/event/property/post"
        self.property_post_reply = self.property_post + "_reply"
        self.property_set = sys_ + "/thing/service/property/set"
        self.property_set_reply = self.property_set + "_reply"
        self.event_prefix = sys_ + "/thing/event/"  # + identifier + "/post"
        self.service_prefix = sys_ + "/thing/service/"  # + identifier (+ "_reply")
        self.ntp_request = "/ext/ntp" + base + "/request"
        self.ntp_response = "/ext/ntp" + base + "/response"
        self.ota_inform = "/ota/device/inform" + base
        self.ota_upgrade = "/ota/device/upgrade" + base  # update jobs (firmware/ota.py)
        self.ota_progress = "/ota/device/progress" + base
        self.shadow_update = "/shadow/update" + base  # device -> shadow: update, get, delete
        self.shadow_get = "/shadow/get" + base  # shadow -> device: replies and control
        self.rrpc_request = sys_ + "/rrpc/request/"  # + messageId (subscribed as + "+")
        self.rrpc_response = sys_ + "/rrpc/response/"  # + the request's messageId
        self.base = base

    def expand(self, topic):
        """A topic without a leading "/" is the device's own: "user/update" ->
        /{pk}/{dn}/user/update; others are kept (and checked by the driver)."""
        if isinstance(topic, str) and topic and topic[0] != "/":
            return self.base + "/" + topic
        return topic

    def event_post(self, identifier):
        return self.event_prefix + identifier + "/post"

    def event_post_reply(self, identifier):
        return self.event_prefix + identifier + "/post_reply"

    def service(self, identifier):
        return self.service_prefix + identifier

    def service_reply(self, identifier):
        return self.service_prefix + identifier + "_reply"


# Where the servers are (docs/aliyun.md, "Endpoints"): the one home of these rules, for MQTT
# (direct sign, the "http" flow's fallback, registration over MQTT) and for the auth server
# (the "http" flow's token, HTTPS registration). An instance (instance_id: the new public
# instances and the Enterprise Edition) has its own names, whatever the region; the previous
# public instances are named by ProductKey and region. mqtt_host / auth_host override both.
def _host(cfg, field, instance, legacy):
    if cfg.get(field):
        return cfg[field]
    iid = cfg.get("instance_id")
    return iid + instance if iid else legacy


def mqtt_host(cfg):
    return _host(cfg, "mqtt_host", ".mqtt.iothub.aliyuncs.com",
                 "%s.iot-as-mqtt.%s.aliyuncs.com" % (cfg["product_key"], cfg["region"]))


def auth_host(cfg):
    return _host(cfg, "auth_host", ".auth.iothub.aliyuncs.com", "iot-auth.%s.aliyuncs.com" % cfg["region"])


def matches(flt, topic):
    """MQTT topic filter matching: "+" one level, "#" the rest."""
    if flt == topic:
        return True
    f = flt.split("/")
    t = topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def load_ca(modem, cfg):
    """Every TLS link (MQTT, and the HTTPS of auth and registration) checks the server:
    the CA of cfg["ca"] goes to the module once per module boot. False: this module cannot
    check (the caller says so); True otherwise, also with tls_verify off."""
    need = ca_needed(modem, cfg)
    if need:
        modem.load_ca(*need)
    return need is not False


def ca_needed(modem, cfg):
    """What load_ca() has to do: (path, pem) to load; None: nothing (loaded already, or
    tls_verify off); False: this module cannot check. (The link's asyncio-friendly phase
    loads it with modem.load_ca_g.)"""
    if not cfg.get("tls_verify", True):
        return None
    if not modem.family()[4]:
        return False
    path = cfg["ca"]
    if modem.ca_loaded == path:
        return None
    with open(path, "rb") as f:  # checked at load (config.py): it exists and is PEM
        return path, f.read()


def token_credentials(cfg, token):
    """(client_id, username, password, host, port) from an http_auth() token: MQTT goes to
    the host the platform named, unless config.json names one."""
    user, password, host, port = token
    if cfg.get("mqtt_host") or not host:
        host, port = mqtt_host(cfg), cfg["mqtt_port"]
    return client_id(cfg), user, password, host, port or cfg["mqtt_port"]


def credentials(modem, cfg):
    """(client_id, username, password, host, port) for the configured flow."""
    if cfg["auth"] == "http":
        from firmware.auth import http_auth

        return token_credentials(cfg, http_auth(modem, cfg))
    host, port = mqtt_host(cfg), cfg["mqtt_port"]
    if cfg.get("device_token") and not cfg.get("device_secret"):  # registered by "mqtt_nwl" (regnwl)
        return (cfg["token_client_id"] + "|securemode=-2,authType=connwl|", cfg["device_name"] + "&" + cfg["product_key"],
                cfg["device_token"], host, port)
    from firmware import sign  # the signer is needed once per connect: it does not stay loaded

    try:
        cid, user, password = sign.mqtt_credentials(
            cfg["product_key"], cfg["device_name"], cfg["device_secret"], client_id(cfg),
            cfg["sign_method"], securemode=2 if cfg["tls"] else 3,
        )
    finally:
        del sign
        drop("firmware.sign")
    return cid, user, password, host, port


def connect(modem, cfg, topics):
    """Open the bearer, sign (or fetch a token), connect over MQTT, subscribe the downlink
    topic: the seed's whole procedure after attach (firmware/link.py does it in phases)."""
    modem.bearer_open(cfg["apn"])
    cid, user, password, host, port = credentials(modem, cfg)
    modem.mqtt_connect(cid, user, password, host, port, tls=cfg["tls"], keepalive=cfg["keepalive"])
    modem.mqtt_subscribe(topics.get, 0)


def parse(topic, payload, tag=_TAG):
    """A downlink's JSON object (thing model, NTP), or None (logged) when it is not one.
    The log names the topic and the length, never the payload (firmware/log.py's rule)."""
    try:
        msg = json.loads(payload)
    except Exception:  # ValueError; UnicodeError (a subclass on CPython) for bad UTF-8
        log.error(tag, "bad JSON on %s (%d bytes): ignored", topic, len(payload))
        return None
    if not isinstance(msg, dict):
        log.error(tag, "not a JSON object on %s (%d bytes): ignored", topic, len(payload))
        return None
    return msg


def version_inform(rid, version):
    """The payload of /ota/device/inform/{pk}/{dn}: the firmware version, sent on connect."""
    return json.dumps({"id": rid, "params": {"version": version}})
