"""The local cloud's memory: products, devices, issued tokens and the clock (CloudState),
shared under one lock by the auth endpoint (auth.py) and the broker (broker.py), persisted
in state_dir/state.json so that a restarted cloud keeps them. No rule lives here: the sign
checks and the login verdicts are auth.py's. Also the demo registry the harness and
`make sim` use (demo_devices.json next to this file).
"""
import json
import os
import secrets
import string
import threading
import time

TOKEN_LIFETIME = 7 * 24 * 3600  # seconds; Aliyun's iotToken lives 7 days
DEMO_REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_devices.json")


def demo():
    """The demo registry: {"products": [...], "devices": [...]}."""
    with open(DEMO_REGISTRY) as f:
        return json.load(f)


def random_id(n, alphabet=string.ascii_letters + string.digits):
    return "".join(secrets.choice(alphabet) for _ in range(n))


class CloudState:
    """Registry + tokens + clock.

    devices: [{"productKey", "deviceName", "deviceSecret"[, "active", "iotId", "enabled"]}]
    products: [{"productKey", "productSecret", "dynamicRegistration"}]
    A device listed with a secret is 'pre-created' (as in the console): dynamic registration
    hands out that secret while the device is not active yet; the first MQTT connection or a
    registration makes it active. state_dir (optional) persists devices and tokens in
    state_dir/state.json so a restarted cloud keeps both. The other arguments are the
    platform's settings the rules in auth.py read (securemode strictness, what
    /auth/devicename names as the MQTT server).
    """

    def __init__(self, devices=(), products=(), state_dir=None, token_lifetime=TOKEN_LIFETIME,
                 clock=time.time, mqtt_host="127.0.0.1", mqtt_port=1883, strict_securemode=True,
                 resources="aliyun", region="cn-shanghai"):
        self.lock = threading.RLock()
        self.clock = clock
        self.clock_offset = 0.0
        self.token_lifetime = token_lifetime
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self.resources, self.region = resources, region
        self.strict_securemode = strict_securemode
        self.thing_reply_code = 200  # the code of thing-model post replies (None: no reply)
        self.state_dir = state_dir  # also where update packages are served from (ota.py)
        self.state_path = os.path.join(state_dir, "state.json") if state_dir else None
        self.products = {}
        self.devices = {}
        self.tokens = {}  # iotToken -> {"iotId", "expires"}
        for p in products:
            self.add_product(p)
        for d in devices:
            self.add_device(d)
        self._load()
        self.save()

    def now(self):
        return self.clock() + self.clock_offset

    # -- registry ---------------------------------------------------------------------------
    def add_product(self, p):
        with self.lock:
            self.products[p["productKey"]] = {
                "productKey": p["productKey"],
                "productSecret": p.get("productSecret", ""),
                "dynamicRegistration": bool(p.get("dynamicRegistration", False)),
            }

    def add_device(self, d):
        with self.lock:
            key = (d["productKey"], d["deviceName"])
            old = self.devices.get(key, {})
            self.devices[key] = {
                "productKey": d["productKey"],
                "deviceName": d["deviceName"],
                "deviceSecret": d.get("deviceSecret") or old.get("deviceSecret") or "",
                "active": bool(d.get("active", old.get("active", False))),
                "enabled": bool(d.get("enabled", old.get("enabled", True))),
                "iotId": d.get("iotId") or old.get("iotId") or random_id(20),
                "tokens": dict(d.get("tokens") or old.get("tokens") or {}),  # clientId -> deviceToken (regnwl)
            }
            return self.devices[key]

    def device(self, pk, dn):
        return self.devices.get((pk, dn))

    def device_by_iot_id(self, iot_id):
        for d in self.devices.values():
            if d["iotId"] == iot_id:
                return d
        return None

    def activate(self, pk, dn):
        with self.lock:
            d = self.devices.get((pk, dn))
            if d is not None and not d["active"]:
                d["active"] = True
                self.save()

    # -- tokens -----------------------------------------------------------------------------
    def issue_token(self, iot_id):
        """A new iotToken for this iotId, valid token_lifetime from now (saved)."""
        with self.lock:
            token = secrets.token_hex(16)
            self.tokens[token] = {"iotId": iot_id, "expires": self.now() + self.token_lifetime}
            self.save()
            return token

    def token_device(self, iot_id, token):
        """The enabled device that `token` was issued to as `iot_id`, while it is valid; else None."""
        with self.lock:
            t = self.tokens.get(token)
            if t is None or t["iotId"] != iot_id or t["expires"] <= self.now():
                return None
            d = self.device_by_iot_id(iot_id)
            return d if d is not None and d["enabled"] else None

    # -- persistence ------------------------------------------------------------------------
    def _load(self):
        if not self.state_path or not os.path.exists(self.state_path):
            return
        with open(self.state_path) as f:
            st = json.load(f)
        for p in st.get("products", []):
            if p["productKey"] not in self.products:
                self.add_product(p)
        for d in st.get("devices", []):
            key = (d["productKey"], d["deviceName"])
            cur = self.devices.get(key)
            if cur is None:
                self.add_device(d)
            else:  # keep the identity and activation the cloud already gave this device
                cur["iotId"] = d["iotId"]
                cur["active"] = cur["active"] or d.get("active", False)
                cur["tokens"].update(d.get("tokens", {}))
                if d.get("deviceSecret") and not cur["deviceSecret"]:
                    cur["deviceSecret"] = d["deviceSecret"]
        self.tokens.update(st.get("tokens", {}))

    def save(self):
        if not self.state_path:
            return
        with self.lock:
            now = self.now()
            self.tokens = {t: v for t, v in self.tokens.items() if v["expires"] > now}
            st = {"products": list(self.products.values()), "devices": list(self.devices.values()),
                  "tokens": self.tokens}
            tmp = self.state_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(st, f, indent=1)
            os.replace(tmp, self.state_path)
