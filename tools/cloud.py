#!/usr/bin/env python3
"""A local stand-in for Aliyun IoT: the HTTP auth endpoint and the MQTT broker, with real
sockets and real sign checks (issue #5, "Local Aliyun").

One cloud process runs both (they share the registry and the issued tokens):
    python tools/cloud.py --registry tools/demo_devices.json --state DIR
prints its ports, writes DIR/cloud.json (ports, CA file, console credentials) for
tools/console.py, persists devices and tokens in DIR/state.json and appends every device
publish to DIR/uplinks.jsonl. Tests and tools use the Python API instead:

    with LocalCloud(devices=[...], products=[...]) as cloud:
        cloud.auth_url, cloud.mqtt_port, cloud.mqtts_port, cloud.ca_file
        cloud.uplinks(), cloud.wait_uplink(pred), cloud.publish(topic, payload, qos)
        cloud.online(pk, dn), cloud.kick(pk, dn), cloud.restart_broker(), cloud.stop()
        rid = cloud.set_properties(pk, dn, {"LightSwitch": 1})      # thing model downlinks,
        rid = cloud.call_service(pk, dn, "ping", {})                 # answered by the device:
        cloud.wait_reply(pk, dn, rid, "ping")                        # its _reply, as a dict
        cloud.set_thing_reply(code)   # the code of the platform's property/event post replies

The platform's own answers (tools/cloud_broker.py platform_replies): property and event
posts get their `_reply`, NTP requests get serverRecvTime/serverSendTime (the cloud's clock,
moved by advance_clock), OTA informs are recorded like every uplink. Console commands for
a running cloud:
    python tools/cloud.py set --state DIR PK DN '{"LightSwitch":1}'
    python tools/cloud.py call --state DIR PK DN ping '{}'

Rules: see tools/cloud_auth.py (sign checks, codes) and tools/cloud_broker.py (broker choice,
CONNACK codes, ACL). TLS: a private CA + server certificate for 127.0.0.1 made with the
`openssl` command into DIR/tls/ (clients trust cloud.ca_file, or skip verification).
"""
import argparse
import asyncio
import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):  # run as `python tools/cloud.py`
    sys.path.insert(0, ROOT)

from tools.cloud_auth import TOKEN_LIFETIME
from tools.proc import stop as stop_process

CONSOLE_USER = "cloud-console"


def topic_matches(topic_filter, topic):
    """MQTT topic filter match ('+' one level, '#' the rest)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


class LocalCloud:
    """Starts the cloud process on 127.0.0.1 free ports and talks to it.

    devices: [{"productKey", "deviceName", "deviceSecret"}]; products: [{"productKey",
    "productSecret", "dynamicRegistration"}]. state_dir: keep state there (default: a temp
    dir removed by stop()). token_lifetime: seconds (Aliyun: 7 days). strict_securemode:
    securemode=2 only on TLS, 3 only on plain TCP (else CONNACK 2). resources: what
    /auth/devicename names as the MQTT server: "aliyun" = {pk}.iot-as-mqtt.cn-shanghai.
    aliyuncs.com:1883 as the platform does (the virtual module maps that name here), "local"
    = 127.0.0.1:mqtt_port. mqtt_port takes plain MQTT and TLS alike (like Aliyun's 1883);
    mqtts_port takes TLS only.
    """

    def __init__(self, devices=(), products=(), state_dir=None, token_lifetime=TOKEN_LIFETIME,
                 strict_securemode=True, resources="aliyun", verbose=False, startup_timeout=20.0):
        self.devices = [dict(d) for d in devices]
        self.products = [dict(p) for p in products]
        self.state_dir = state_dir
        self.token_lifetime = token_lifetime
        self.strict_securemode = strict_securemode
        self.resources = resources
        self.verbose = verbose
        self.startup_timeout = startup_timeout
        self._own_dir = False
        self._proc = None
        self._log = None
        self.info = None
        self._uplinks = []
        self._uplink_pos = 0
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
        cmd = [sys.executable, os.path.join(ROOT, "tools", "cloud.py"), "--registry", reg,
               "--state", self.state_dir, "--token-lifetime", str(self.token_lifetime),
               "--parent-pid", str(os.getpid()), "--resources", self.resources]
        if not self.strict_securemode:
            cmd.append("--lenient-securemode")
        if self.verbose:
            cmd.append("--verbose")
        if self._own_dir:
            cmd.append("--remove-state-if-orphaned")
        self._log = open(os.path.join(self.state_dir, "cloud.log"), "ab")
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                      stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                log = self.log_text()
                self.stop()
                raise RuntimeError("cloud process exited (%s):\n%s" % (self._proc and self._proc.returncode, log))
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
        self._uplink_path = info["uplinks"]
        self._uplink_pos = os.path.getsize(self._uplink_path) if os.path.exists(self._uplink_path) else 0
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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        try:
            with open(os.path.join(self.state_dir, "cloud.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # -- endpoints ------------------------------------------------------------------------------
    @property
    def host(self):
        return self.info["host"]

    @property
    def auth_url(self):
        return self.info["auth_url"]

    @property
    def mqtt_port(self):
        return self.info["mqtt_port"]

    @property
    def mqtts_port(self):
        return self.info["mqtts_port"]

    @property
    def ca_file(self):
        return self.info["ca_file"]

    @property
    def console_credentials(self):
        return self.info["console"]["username"], self.info["console"]["password"]

    # -- uplinks --------------------------------------------------------------------------------
    def _refresh(self):
        with self._uplink_lock:
            try:
                with open(self._uplink_path, "rb") as f:
                    f.seek(self._uplink_pos)
                    chunk = f.read()
            except FileNotFoundError:
                return
            end = chunk.rfind(b"\n") + 1  # only complete lines
            for line in chunk[:end].splitlines():
                r = json.loads(line)
                self._uplinks.append((r["topic"], r["payload"].encode("latin-1"), r["qos"]))
            self._uplink_pos += end

    def uplinks(self, topic=None):
        """[(topic, payload bytes, qos as published)] of every device publish, in order.
        topic: an exact topic or an MQTT filter."""
        self._refresh()
        with self._uplink_lock:
            items = list(self._uplinks)
        if topic is None:
            return items
        return [u for u in items if topic_matches(topic, u[0])]

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
        from tools.console import console_publish
        console_publish(self.info, topic, payload, qos)

    def _control(self, op, **form):
        from tools.console import control
        return control(self.info, op, **form)

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

    def device_list(self):
        """The registry as the cloud sees it now (with deviceSecret, active, online)."""
        return self._control("devices")["devices"]

    # -- thing model (Alink JSON) ------------------------------------------------------------------
    def set_thing_reply(self, code=200):
        """The code the platform puts in its replies to property/event posts (None: no reply,
        so the device sees a timeout)."""
        return self._control("thing_reply", code="none" if code is None else str(code))["code"]

    def set_properties(self, pk, dn, params):
        """Console "set property": a thing.service.property.set downlink; returns its id."""
        rid = next_request_id()
        self.publish(thing_topic(pk, dn, "property/set"), thing_request(rid, "thing.service.property.set", params), 0)
        return rid

    def call_service(self, pk, dn, identifier, params):
        """Console "call service": a thing.service.{identifier} downlink; returns its id."""
        rid = next_request_id()
        self.publish(thing_topic(pk, dn, identifier), thing_request(rid, "thing.service." + identifier, params), 0)
        return rid

    def wait_reply(self, pk, dn, rid, identifier="property/set", timeout=10.0, since=0):
        """The device's answer (a dict) to request `rid` on .../thing/service/{identifier}_reply."""
        topic = thing_topic(pk, dn, identifier) + "_reply"
        t, payload, qos = self.wait_uplink(lambda tp, p: tp == topic and _reply_id(p) == rid, timeout, since)
        return json.loads(payload)


_ids = [int(time.time() * 1000) % 100000000]


def next_request_id():
    """A fresh Alink request id (a string of digits) for console downlinks."""
    _ids[0] += 1
    return str(_ids[0])


def thing_topic(pk, dn, identifier):
    return "/sys/%s/%s/thing/service/%s" % (pk, dn, identifier)


def thing_request(rid, method, params):
    return json.dumps({"id": rid, "version": "1.0", "params": params, "method": method})


def _reply_id(payload):
    try:
        return str(json.loads(payload).get("id"))
    except (ValueError, AttributeError):
        return None


def thing_console(argv):
    """`python tools/cloud.py set|call ...`: the console's "set property" and "call service"
    against a running cloud; prints the device's reply (read from the uplink record)."""
    ap = argparse.ArgumentParser(prog="tools/cloud.py", description="thing-model console commands")
    ap.add_argument("cmd", choices=("set", "call"))
    ap.add_argument("--state", required=True, help="the cloud's state directory (or its cloud.json)")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the device's reply (0: do not wait)")
    ap.add_argument("pk")
    ap.add_argument("dn")
    ap.add_argument("rest", nargs="+", help="set: PARAMS_JSON; call: IDENTIFIER PARAMS_JSON")
    a = ap.parse_args(argv)
    from tools.console import console_publish, load_info
    info = load_info(a.state)
    if a.cmd == "set":
        identifier, method, params = "property/set", "thing.service.property.set", a.rest[0]
    else:
        if len(a.rest) != 2:
            ap.error("call needs IDENTIFIER PARAMS_JSON")
        identifier, method, params = a.rest[0], "thing.service." + a.rest[0], a.rest[1]
    rid = next_request_id()
    with open(info["uplinks"], "rb") as f:
        start = len(f.read())
    console_publish(info, thing_topic(a.pk, a.dn, identifier), thing_request(rid, method, json.loads(params)), 0)
    print("sent %s id %s to %s/%s" % (method, rid, a.pk, a.dn))
    if a.wait <= 0:
        return 0
    reply_topic = thing_topic(a.pk, a.dn, identifier) + "_reply"
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        with open(info["uplinks"], "rb") as f:
            f.seek(start)
            for line in f.read().splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r["topic"] == reply_topic and _reply_id(r["payload"].encode("latin-1")) == rid:
                    print("reply %s" % r["payload"].encode("latin-1").decode("utf-8", "replace"))
                    return 0
        time.sleep(0.1)
    print("no reply within %.0f s" % a.wait)
    return 1


# ---------------------------------------------------------------------------------------------
# The cloud process
# ---------------------------------------------------------------------------------------------
async def _serve(args, st, console, certs):
    from tools.cloud_auth import AuthHTTPServer
    from tools.cloud_broker import AliyunBroker, broker_config, listener_port

    loop = asyncio.get_running_loop()
    ca, crt, key = certs
    uplink_path = os.path.join(args.state, "uplinks.jsonl")
    uplink_file = open(uplink_path, "a")

    def on_uplink(rec):
        uplink_file.write(json.dumps(rec) + "\n")
        uplink_file.flush()

    ports = [args.mqtt_port, args.mqtts_port]
    holder = {}

    async def start_broker():
        for attempt in range(50):  # a port may need a moment after a restart
            b = AliyunBroker(broker_config(args.host, ports[0], ports[1], crt, key), st, console, on_uplink,
                             dual_tls=(crt, key))
            try:
                await b.start()
                break
            except Exception:
                if attempt == 49 or (ports[0] == 0 and ports[1] == 0):
                    raise
                await asyncio.sleep(0.1)
        ports[0], ports[1] = listener_port(b, "default"), listener_port(b, "tls")
        holder["broker"] = b

    restart_lock = asyncio.Lock()

    async def restart_broker(crash=False):
        async with restart_lock:
            old = holder["broker"]
            if crash:  # as if the broker process died: every connection cut, no goodbye
                old.force_close()
            else:
                try:
                    await asyncio.wait_for(old.drop_everyone(), 10)
                    await asyncio.wait_for(old.shutdown(), 10)
                except Exception as e:  # a stuck shutdown must not leave a half-shut broker
                    logging.getLogger("cloud").warning("broker shutdown stuck (%r): closing it by force", e)
                    old.force_close()
            await start_broker()

    async def on_loop(fn):
        return fn()

    def control(op, form):  # runs in an HTTP server thread
        def call(coro):
            return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

        if op == "online":
            return {"online": call(on_loop(lambda: holder["broker"].online(form["productKey"], form["deviceName"])))}
        if op == "kick":
            return {"kicked": call(holder["broker"].kick(form["productKey"], form["deviceName"]))}
        if op == "restart_broker":
            call(restart_broker(form.get("crash") == "1"))
            return {"ok": True, "mqtt_port": ports[0], "mqtts_port": ports[1]}
        if op == "advance_clock":
            with st.lock:
                st.clock_offset += float(form.get("seconds", "0"))
                return {"offset": st.clock_offset}
        if op == "thing_reply":
            with st.lock:
                st.thing_reply_code = None if form.get("code") in (None, "none") else int(form["code"])
                return {"code": st.thing_reply_code}
        if op == "devices":
            on = set(call(on_loop(lambda: holder["broker"].online_devices())))
            with st.lock:
                return {"devices": [dict(d, online=(d["productKey"], d["deviceName"]) in on)
                                    for d in st.devices.values()]}
        raise ValueError("unknown control op %r" % op)

    stop = asyncio.Event()  # before anything is announced: a SIGTERM right after the banner stops cleanly
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await start_broker()
    st.mqtt_port = ports[0]
    http = AuthHTTPServer(st, args.host, args.auth_port, control=control, control_token=console[1],
                          verbose=args.verbose)
    threading.Thread(target=http.serve_forever, name="auth-http", daemon=True).start()
    info = {
        "pid": os.getpid(), "host": args.host,
        "auth_url": "http://%s:%d" % (args.host, http.port), "auth_port": http.port,
        "mqtt_port": ports[0], "mqtts_port": ports[1], "ca_file": ca,
        "console": {"username": console[0], "password": console[1]},
        "uplinks": uplink_path, "state_dir": args.state,
    }
    info_path = os.path.join(args.state, "cloud.json")
    with open(info_path + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(info_path + ".tmp", info_path)
    print("local aliyun: auth %s  mqtt tcp %s:%d  mqtt tls %s:%d  (CA %s)" % (
        info["auth_url"], args.host, ports[0], args.host, ports[1], ca), flush=True)
    print("console: python tools/console.py --state %s watch PK DN" % args.state, flush=True)

    orphaned = []

    async def watch_parent():  # the test process died without stop(): do not linger
        while not stop.is_set():
            if args.parent_pid and os.getppid() != args.parent_pid:
                orphaned.append(True)
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch_parent())
    await stop.wait()
    watcher.cancel()
    try:
        os.remove(info_path)
    except OSError:
        pass
    http.shutdown()
    http.server_close()
    try:
        await asyncio.wait_for(holder["broker"].shutdown(), 10)
    except Exception as e:  # exiting anyway
        print("broker shutdown: %r" % e, flush=True)
    st.save()
    uplink_file.close()
    if orphaned and args.remove_state_if_orphaned:
        shutil.rmtree(args.state, ignore_errors=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("set", "call"):
        return thing_console(argv)
    ap = argparse.ArgumentParser(description="Local Aliyun IoT: auth endpoint + MQTT broker")
    ap.add_argument("--registry", help="JSON file {products: [...], devices: [...]}")
    ap.add_argument("--state", required=True, help="state directory (cloud.json, state.json, tls/, uplinks.jsonl)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--auth-port", type=int, default=0)
    ap.add_argument("--mqtt-port", type=int, default=0)
    ap.add_argument("--mqtts-port", type=int, default=0)
    ap.add_argument("--token-lifetime", type=float, default=TOKEN_LIFETIME)
    ap.add_argument("--lenient-securemode", action="store_true",
                    help="accept securemode=2/3 on either listener")
    ap.add_argument("--resources", choices=("aliyun", "local"), default="aliyun",
                    help="MQTT server named by /auth/devicename: Aliyun's host name and 1883, or this broker")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this parent goes away")
    ap.add_argument("--remove-state-if-orphaned", action="store_true",
                    help="delete --state when exiting because the parent went away")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        logging.getLogger("transitions").setLevel(logging.WARNING)

    from tools.cloud_auth import CloudState
    from tools.cloud_broker import make_certs

    os.makedirs(args.state, exist_ok=True)
    reg = {}
    if args.registry:
        with open(args.registry) as f:
            reg = json.load(f)
    certs = make_certs(os.path.join(args.state, "tls"), args.host)
    st = CloudState(devices=reg.get("devices", []), products=reg.get("products", []), state_dir=args.state,
                    token_lifetime=args.token_lifetime, mqtt_host=args.host,
                    strict_securemode=not args.lenient_securemode, resources=args.resources)
    console = (CONSOLE_USER, secrets.token_hex(16))  # new credentials at every start
    asyncio.run(_serve(args, st, console, certs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
