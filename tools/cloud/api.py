"""LocalCloud: the local cloud for tests and tools, as one Python object. It starts the cloud
process (`python -m tools.cloud`, __main__.py) on free 127.0.0.1 ports, reads its record
of device publishes, and drives it through the console (console.py):

    with LocalCloud.demo() as cloud:              # or LocalCloud(devices=[...], products=[...])
        cloud.auth_url, cloud.auths_url, cloud.mqtt_port, cloud.mqtts_port, cloud.ca_file
        cloud.uplinks(), cloud.wait_uplink(pred), cloud.publish(topic, payload, qos)
        cloud.online(pk, dn), cloud.kick(pk, dn), cloud.restart_broker(), cloud.stats(), cloud.stop()
        rid = cloud.set_properties(pk, dn, {"LightSwitch": 1})      # thing model downlinks,
        rid = cloud.call_service(pk, dn, "ping", {})                 # answered by the device:
        cloud.wait_reply(pk, dn, rid, "ping")                        # its _reply, as a dict
        cloud.set_thing_reply(code)   # the code of the platform's property/event post replies
        job = cloud.ota_job(pk, dn, "build/ota-1.3.0.bin")          # an update job (ota.py),
        cloud.ota_progress(pk, dn), cloud.ota_served()                # its reports, the GETs
        cloud.shadow(pk, dn), cloud.set_desired(pk, dn, {"color": "green"})   # device shadow
        cloud.rrpc(pk, dn, b"ping", timeout_ms=8000)   # {"RrpcCode": "SUCCESS", "payload": ...}

The platform's own answers (broker.py platform_replies): property and event posts get their
`_reply`, NTP requests get serverRecvTime/serverSendTime (the cloud's clock, moved by
advance_clock), OTA informs are recorded like every uplink. The rules: auth.py (sign checks,
codes) and broker.py (broker choice, CONNACK codes, ACL).
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from firmware.aliyun import matches  # MQTT topic filters: the one rule, the device's

from tools.cloud import console, registry
from tools.proc import Started
from tools.proc import stop as stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _info(key, doc):
    """A read-only attribute of the running cloud, from its cloud.json."""
    return property(lambda self: self.info[key], doc=doc)


class LocalCloud(Started):
    """Starts the cloud process on 127.0.0.1 free ports and talks to it.

    devices: [{"productKey", "deviceName", "deviceSecret"}]; products: [{"productKey",
    "productSecret", "dynamicRegistration"}]. state_dir: keep state there (default: a temp
    dir removed by stop()). token_lifetime: seconds (Aliyun: 7 days). strict_securemode:
    securemode=2 only on TLS, 3 only on plain TCP (else CONNACK 2). resources: what
    /auth/devicename names as the MQTT server: "aliyun" = {pk}.iot-as-mqtt.cn-shanghai.
    aliyuncs.com:1883 as the platform does (the virtual module maps that name here), "local"
    = 127.0.0.1:mqtt_port. mqtt_port takes plain MQTT and TLS alike (like Aliyun's 1883);
    mqtts_port takes TLS only. Both TLS ports and auths_url (the HTTPS auth endpoint) present
    a certificate from ca_file for the Aliyun names (certs.py); mitm=True: one for the same
    names from another CA (rogue_ca_file), as a man in the middle would.
    """

    @classmethod
    def demo(cls, **options):
        """A cloud holding the demo registry (registry.demo(): the devices `make sim`, the
        end-to-end tests and the benchmarks use)."""
        reg = registry.demo()
        return cls(devices=reg["devices"], products=reg["products"], **options)

    def __init__(self, devices=(), products=(), state_dir=None, token_lifetime=registry.TOKEN_LIFETIME,
                 strict_securemode=True, resources="aliyun", verbose=False, startup_timeout=20.0,
                 mitm=False):
        self.devices = [dict(d) for d in devices]
        self.products = [dict(p) for p in products]
        self.state_dir = state_dir
        self.token_lifetime = token_lifetime
        self.strict_securemode = strict_securemode
        self.resources = resources
        self.verbose = verbose
        self.mitm = mitm
        self.startup_timeout = startup_timeout
        self._own_dir = False
        self._proc = None
        self._log = None
        self.info = None
        self._record = None  # console.UplinkRecord of this run
        self._uplinks = []
        self._uplink_lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self):
        if self._proc is not None:
            raise RuntimeError("already started")
        if self.state_dir is None:
            self.state_dir = tempfile.mkdtemp(prefix="localcloud-")
            self._own_dir = True
        os.makedirs(self.state_dir, exist_ok=True)
        reg = os.path.join(self.state_dir, "registry.json")
        with open(reg, "w") as f:
            json.dump({"products": self.products, "devices": self.devices}, f, indent=1)
        info_path = os.path.join(self.state_dir, "cloud.json")
        if os.path.exists(info_path):
            os.remove(info_path)
        cmd = [sys.executable, "-m", "tools.cloud", "--registry", reg,
               "--state", self.state_dir, "--token-lifetime", str(self.token_lifetime),
               "--parent-pid", str(os.getpid()), "--resources", self.resources]
        if not self.strict_securemode:
            cmd.append("--lenient-securemode")
        if self.verbose:
            cmd.append("--verbose")
        if self.mitm:
            cmd.append("--mitm")
        if self._own_dir:
            cmd.append("--remove-state-if-orphaned")
        self._log = open(os.path.join(self.state_dir, "cloud.log"), "ab")
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                      stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                log = self.log_text()
                self.stop()
                raise RuntimeError("cloud process exited (%s):\n%s" % (rc, log))
            if os.path.exists(info_path):
                with open(info_path) as f:
                    info = json.load(f)
                if info.get("pid") == self._proc.pid:
                    break
            if time.monotonic() > deadline:
                log = self.log_text()
                self.stop()
                raise TimeoutError("cloud did not start in time:\n" + log)
            time.sleep(0.02)
        self.info = info
        self._record = console.UplinkRecord(info["uplinks"])
        self._uplinks = []
        return self

    def stop(self):
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            stop_process(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_dir and self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir, self._own_dir = None, False

    def log_text(self):
        try:
            with open(os.path.join(self.state_dir, "cloud.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # -- endpoints ------------------------------------------------------------------------------
    host = _info("host", "the address every endpoint listens on (127.0.0.1)")
    auth_url = _info("auth_url", "http://host:port of the auth endpoint (and the control API)")
    mqtt_port = _info("mqtt_port", "the broker's port for plain MQTT and TLS alike (Aliyun's 1883)")
    mqtts_port = _info("mqtts_port", "the broker's TLS-only port")
    auths_url = _info("auths_url", "https://host:port of the auth endpoint over TLS")
    ca_file = _info("ca_file", "the local cloud's own CA, which issued the certificate its TLS listeners present")
    rogue_ca_file = _info("rogue_ca_file", "the other CA, whose certificate they present with mitm=True")

    @property
    def console_credentials(self):
        return self.info["console"]["username"], self.info["console"]["password"]

    # -- uplinks --------------------------------------------------------------------------------
    def _refresh(self):
        with self._uplink_lock:
            self._uplinks += self._record.read()

    def uplinks(self, topic=None):
        """[(topic, payload bytes, qos as published)] of every device publish, in order.
        topic: an exact topic or an MQTT filter."""
        self._refresh()
        with self._uplink_lock:
            items = list(self._uplinks)
        if topic is None:
            return items
        return [u for u in items if matches(topic, u[0])]

    def wait_uplink(self, pred, timeout=10.0, since=0):
        """First uplink (from index `since` of uplinks()) with pred(topic, payload) true."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            items = self.uplinks()
            for u in items[i:]:
                if pred(u[0], u[1]):
                    return u
            i = max(i, len(items))
            if time.monotonic() > deadline:
                raise TimeoutError("no matching uplink within %.1f s" % timeout)
            time.sleep(0.02)

    # -- console ----------------------------------------------------------------------------------
    def publish(self, topic, payload, qos=0):
        """Console downlink, as the privileged cloud client; returns once the broker has
        handed it to the subscribers."""
        console.publish(self.info, topic, payload, qos)

    def _control(self, op, **form):
        return console.control(self.info, op, **form)

    def online(self, pk, dn):
        return self._control("online", productKey=pk, deviceName=dn)["online"]

    def kick(self, pk, dn):
        """Server-side disconnect of every connection of this device; returns how many."""
        return self._control("kick", productKey=pk, deviceName=dn)["kicked"]

    def restart_broker(self, crash=False):
        """Drop every MQTT connection and restart the broker on the same ports (registry,
        tokens and the uplink record survive). crash: cut the connections without a graceful
        shutdown, as when the broker process dies (also what a stuck shutdown falls back to)."""
        self._control("restart_broker", **({"crash": "1"} if crash else {}))

    def advance_clock(self, seconds):
        """Move the cloud's clock (token expiry) forward."""
        return self._control("advance_clock", seconds=str(seconds))["offset"]

    def stats(self):
        """Counters of this run: {"broker": {"connects": MQTT CONNECTs seen (the console's
        not counted), "tls_refused":
        failed handshakes}, "auth": {"requests": auth/registration requests answered,
        "tls_refused": failed HTTPS handshakes}}."""
        return self._control("stats")

    def device_list(self):
        """The registry as the cloud sees it now (with deviceSecret, active, online)."""
        return self._control("devices")["devices"]

    # -- OTA (ota.py) -------------------------------------------------------------------------------
    def ota_job(self, pk, dn, package, sign_method="SHA256", tamper=False, scheme="https", **override):
        """Console "start an update": the package served, its job pushed; returns the
        staged package ({"name", "version", "size", "md5", "sha256"})."""
        from tools.cloud import ota

        staged = ota.stage(self.state_dir, package, tamper)
        msg = ota.job_message(staged, sign_method, scheme, **override)
        self.publish(ota.upgrade_topic(pk, dn), msg, 1)
        return staged

    def ota_progress(self, pk, dn, since=0):
        """[(step, desc)] of the device's progress reports (uplinks from index `since`)."""
        from tools.cloud import ota

        return ota.progress(self.uplinks()[since:], pk, dn)

    def ota_served(self):
        """Every package GET answered: [{"file", "range", "status", "bytes"}]."""
        from tools.cloud import ota

        return ota.served(self.state_dir)

    # -- thing model (Alink JSON) ------------------------------------------------------------------
    def set_thing_reply(self, code=200):
        """The code the platform puts in its replies to property/event posts (None: no reply,
        so the device sees a timeout)."""
        return self._control("thing_reply", code="none" if code is None else str(code))["code"]

    def set_properties(self, pk, dn, params):
        """Console "set property": a thing.service.property.set downlink; returns its id."""
        return console.thing_request(self.info, pk, dn, "property/set", params)

    def call_service(self, pk, dn, identifier, params):
        """Console "call service": a thing.service.{identifier} downlink; returns its id."""
        return console.thing_request(self.info, pk, dn, identifier, params)

    def wait_reply(self, pk, dn, rid, identifier="property/set", timeout=10.0, since=0):
        """The device's answer (a dict) to request `rid` on .../thing/service/{identifier}_reply."""
        is_reply = console.thing_reply_test(pk, dn, identifier, rid)
        t, payload, qos = self.wait_uplink(is_reply, timeout, since)
        return json.loads(payload)

    # -- device shadow and RRPC (shadow.py, rrpc.py) ------------------------------------------------
    def shadow(self, pk, dn):
        """The device's shadow document now: {"state": {"reported", "desired"}, "metadata",
        "version", "timestamp"}."""
        return console.shadow_document(self.info, pk, dn)

    def set_desired(self, pk, dn, desired, version=None):
        """The console's "update desired": the shadow's next version (returned), and its
        control message to the device."""
        return console.set_desired(self.info, pk, dn, desired, version)

    def rrpc(self, pk, dn, payload, timeout_ms=8000):
        """An RRPC call, as the RRpc API: {"RrpcCode": "SUCCESS" | "TIMEOUT" | "OFFLINE",
        "MessageId", "ms"[, "payload": the answer's bytes]}; blocks up to timeout_ms."""
        return console.rrpc(self.info, pk, dn, payload, timeout_ms)
