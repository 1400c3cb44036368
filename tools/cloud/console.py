"""The console of a running local cloud, like Aliyun's web console.

A privileged MQTT client and the control API of the cloud process (python -m tools.cloud),
given its cloud.json. LocalCloud (api.py) drives the cloud through these functions; the CLI
is the same for a person:

    python -m tools.cloud.console --state DIR watch PK DN        # a device's uplinks as they arrive
    python -m tools.cloud.console --state DIR publish TOPIC PAYLOAD [--qos 1]   # downlink
    python -m tools.cloud.console --state DIR devices            # registry + who is online
    python -m tools.cloud.console --state DIR kick PK DN         # server-side disconnect
    python -m tools.cloud.console --state DIR set PK DN '{"LightSwitch":1}'   # thing model: set
    python -m tools.cloud.console --state DIR call PK DN ping '{}'            # ... call a service
    python -m tools.cloud.console --state DIR ota PK DN build/ota-1.3.0.bin    # an update job (ota.py)
    python -m tools.cloud.console --state DIR shadow PK DN                    # the device shadow
    python -m tools.cloud.console --state DIR desired PK DN '{"color":"green"}'  # ... update desired
    python -m tools.cloud.console --state DIR rrpc PK DN 'ping' [--timeout-ms 8000]  # RRPC call

--state is the cloud's state directory (or its cloud.json), where the running cloud wrote its
ports and the privileged console credentials (new ones at every cloud start). The console is
an MQTT client with those credentials: it may publish to any topic, and it reads uplinks
from the broker's $cloud/uplink/{pk}/{dn} copies (each carries the device's publish QoS).
`set` and `call` print the device's reply, read from the cloud's uplink record. `desired`
sends the shadow's control message and prints the document once the device has reported and
cleared desired; `rrpc` prints the device's answer ("answer ...") or "timeout" / "offline"
after at most the call's timeout (the platform's 8 s).
"""
import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import paho.mqtt.client as mqtt

UPLINK_ENVELOPE = "$cloud/uplink"
_ids = [int(time.time() * 1000) % 100000000]


def load_info(state):
    path = os.path.join(state, "cloud.json") if os.path.isdir(state) else state
    with open(path) as f:
        return json.load(f)


def client(info, client_id=None):
    """A connected privileged paho client (network loop running); caller must stop it."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                    client_id=client_id or "cloud-console-" + uuid.uuid4().hex[:12], clean_session=True)
    c.username_pw_set(info["console"]["username"], info["console"]["password"])
    ready = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, rc, props=None):
        result["rc"] = rc
        ready.set()

    c.on_connect = on_connect
    c.connect(info["host"], info["mqtt_port"], keepalive=60)
    c.loop_start()
    if not ready.wait(10) or result.get("rc") != 0:
        c.loop_stop()
        c.disconnect()
        raise ConnectionError("console login refused: %r" % result.get("rc"))
    return c


def publish(info, topic, payload, qos=0, timeout=5.0):
    """Publish one downlink as the privileged client. Returns once the broker has handed it
    to its subscribers: the console subscribes to the same topic and waits for the echo, so
    closing the connection right after cannot lose the message."""
    if isinstance(payload, str):
        payload = payload.encode()
    c = client(info)
    try:
        echo, subbed = threading.Event(), threading.Event()
        c.on_message = lambda cl, ud, m: echo.set() if m.topic == topic and m.payload == payload else None
        c.on_subscribe = lambda *a: subbed.set()
        c.subscribe(topic, qos=0)
        if not subbed.wait(timeout):
            raise TimeoutError("console subscribe timed out")
        info_ = c.publish(topic, payload, qos=qos)
        info_.wait_for_publish(timeout)
        if not echo.wait(timeout):
            raise TimeoutError("downlink on %s not confirmed by the broker" % topic)
    finally:
        c.disconnect()
        c.loop_stop()


def control(info, op, **form):
    """Call the running cloud's private control API (online, kick, restart_broker, ...)."""
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(info["auth_url"] + "/_cloud/" + op, data=data, method="POST",
                                 headers={"X-Cloud-Token": info["console"]["password"],
                                          "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class UplinkRecord:
    """The cloud's record of device publishes (uplinks.jsonl: one JSON object a line, appended
    by the cloud process), read from where it ended when this reader was made."""

    def __init__(self, path):
        self.path = path
        self.pos = os.path.getsize(path) if os.path.exists(path) else 0

    def read(self):
        """[(topic, payload bytes, qos as published)] of the complete lines written since."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # only complete lines
        self.pos += end
        out = []
        for line in chunk[:end].splitlines():
            r = json.loads(line)
            out.append((r["topic"], r["payload"].encode("latin-1"), r["qos"]))
        return out


# -- thing model (Alink JSON) ----------------------------------------------------------------------
def _thing_topic(pk, dn, identifier):
    return "/sys/%s/%s/thing/service/%s" % (pk, dn, identifier)


def thing_request(info, pk, dn, identifier, params):
    """A thing.service.* downlink ("property/set": set properties; any other identifier: call
    that service) with a fresh Alink request id, which it returns."""
    _ids[0] += 1
    rid = str(_ids[0])
    method = "thing.service." + identifier.replace("/", ".")
    msg = json.dumps({"id": rid, "version": "1.0", "params": params, "method": method})
    publish(info, _thing_topic(pk, dn, identifier), msg, 0)
    return rid


def thing_reply_test(pk, dn, identifier, rid):
    """pred(topic, payload): is this uplink the device's reply to request `rid`?"""
    want = _thing_topic(pk, dn, identifier) + "_reply"

    def is_reply(topic, payload):
        if topic != want:
            return False
        try:
            return str(json.loads(payload).get("id")) == rid
        except (ValueError, AttributeError):
            return False
    return is_reply


# -- device shadow and RRPC ------------------------------------------------------------------------
def shadow_document(info, pk, dn):
    return control(info, "shadow", productKey=pk, deviceName=dn)


def set_desired(info, pk, dn, desired, version=None):
    """Update state.desired; the shadow sends the control message. Returns the new version."""
    form = {"productKey": pk, "deviceName": dn, "desired": json.dumps(desired)}
    if version is not None:
        form["version"] = str(version)
    return control(info, "shadow_desired", **form)["version"]


def rrpc(info, pk, dn, payload, timeout_ms=8000):
    """One RRPC call (blocks up to timeout_ms): the RRpc API's answer, with "payload" (bytes)
    decoded from PayloadBase64Byte when the device answered."""
    if isinstance(payload, str):
        payload = payload.encode()
    out = control(info, "rrpc", productKey=pk, deviceName=dn, Timeout=str(timeout_ms),
                  RequestBase64Byte=base64.b64encode(payload).decode())
    if "PayloadBase64Byte" in out:
        out["payload"] = base64.b64decode(out["PayloadBase64Byte"])
    return out


def _text(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()


def shadow_command(info, a):
    if a.cmd == "shadow":
        print(json.dumps(shadow_document(info, a.pk, a.dn), indent=1))
        return 0
    version = set_desired(info, a.pk, a.dn, json.loads(a.desired))
    print("control version %d sent to %s/%s" % (version, a.pk, a.dn))
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        doc = shadow_document(info, a.pk, a.dn)
        if doc["version"] > version and not doc["state"]["desired"]:
            print("reported %s version %d" % (json.dumps(doc["state"]["reported"]), doc["version"]))
            return 0
        time.sleep(0.1)
    print("not applied within %.0f s" % a.wait)
    return 1


def rrpc_command(info, a):
    out = rrpc(info, a.pk, a.dn, a.payload, a.timeout_ms)
    if out["RrpcCode"] == "SUCCESS":
        print("answer %s (%d ms, messageId %s)" % (_text(out["payload"]), out["ms"], out["MessageId"]))
        return 0
    print(out["RrpcCode"].lower())
    return 1


def _show(rec):
    try:
        text = rec["payload"].encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        text = rec["payload"].encode("latin-1").hex()
    stamp = time.strftime("%H:%M:%S", time.localtime(rec["ts"])) + ".%03d" % (rec["ts"] % 1 * 1000)
    return "%s qos%d %s %s" % (stamp, rec["qos"], rec["topic"], text)


def watch(info, pk, dn, out=sys.stdout, stop=None):
    c = client(info)

    def on_message(client, userdata, m):
        print(_show(json.loads(m.payload)), file=out, flush=True)

    c.on_message = on_message
    c.subscribe("%s/%s/%s" % (UPLINK_ENVELOPE, pk, dn), qos=0)
    print("watching uplinks of %s/%s (Ctrl-C to stop)" % (pk, dn), file=out, flush=True)
    try:
        while not (stop and stop.is_set()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        c.disconnect()
        c.loop_stop()


def thing_command(info, a):
    """`set` / `call`: send the request, print the device's reply (0), or say none came (1)."""
    identifier = "property/set" if a.cmd == "set" else a.identifier
    record = UplinkRecord(info["uplinks"])
    rid = thing_request(info, a.pk, a.dn, identifier, json.loads(a.params))
    print("sent thing.service.%s id %s to %s/%s" % (identifier.replace("/", "."), rid, a.pk, a.dn))
    if a.wait <= 0:
        return 0
    is_reply = thing_reply_test(a.pk, a.dn, identifier, rid)
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        for topic, payload, _qos in record.read():
            if is_reply(topic, payload):
                print("reply %s" % payload.decode("utf-8", "replace"))
                return 0
        time.sleep(0.1)
    print("no reply within %.0f s" % a.wait)
    return 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.cloud.console", description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, help="the cloud's state directory or its cloud.json")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch", help="print a device's uplinks as they arrive")
    p = sub.add_parser("publish", help="send a downlink (console 'publish message')")
    p.add_argument("topic", help="the whole topic, e.g. /PK/DN/user/get")
    p.add_argument("payload", help="the message (text)")
    p.add_argument("--qos", type=int, default=0, choices=(0, 1), help="0 (default) or 1")
    sub.add_parser("devices", help="list the registry and who is online")
    k = sub.add_parser("kick", help="disconnect a device server-side")
    st = sub.add_parser("set", help="thing model: set properties (thing.service.property.set)")
    ca = sub.add_parser("call", help="thing model: call a service (thing.service.IDENTIFIER)")
    sh = sub.add_parser("shadow", help="print the device shadow")
    de = sub.add_parser("desired", help="device shadow: update the desired state (the device gets a control)")
    rp = sub.add_parser("rrpc", help="an RRPC call: print the device's answer, or timeout")
    for sp in (w, k, st, ca, sh, de, rp):
        sp.add_argument("pk", help="the ProductKey")
        sp.add_argument("dn", help="the DeviceName")
    de.add_argument("desired", help="the desired state, a JSON object")
    de.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the device to report it")
    rp.add_argument("payload", help="the request's bytes (text)")
    rp.add_argument("--timeout-ms", type=int, default=8000, help="1000..8000 (the platform's most: 8000)")
    ca.add_argument("identifier", help="the service's identifier in the thing model")
    o = sub.add_parser("ota", help="start an update job from a package (tools/ota_package.py) and show its progress")
    o.add_argument("pk", help="the ProductKey")
    o.add_argument("dn", help="the DeviceName")
    o.add_argument("package", help="a package file made by make ota-package")
    o.add_argument("--sign-method", default="SHA256", choices=("SHA256", "MD5"), help="the job's digest (default SHA256)")
    o.add_argument("--wait", type=float, default=300.0, help="seconds to show progress reports (0: do not wait)")
    for sp in (st, ca):
        sp.add_argument("params", help="the params object, JSON")
        sp.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the device's reply (0: do not wait)")
    a = ap.parse_args(argv)
    info = load_info(a.state)
    if a.cmd == "watch":
        watch(info, a.pk, a.dn)
    elif a.cmd == "publish":
        publish(info, a.topic, a.payload, a.qos)
        print("published %d bytes to %s (qos %d)" % (len(a.payload.encode()), a.topic, a.qos))
    elif a.cmd == "devices":
        for d in control(info, "devices")["devices"]:
            print("%-12s %-24s active=%-5s online=%s" % (d["productKey"], d["deviceName"],
                                                         d["active"], d["online"]))
    elif a.cmd == "kick":
        print("kicked %d connection(s)" % control(info, "kick", productKey=a.pk, deviceName=a.dn)["kicked"])
    elif a.cmd == "ota":
        return ota_command(info, a)
    elif a.cmd in ("shadow", "desired"):
        return shadow_command(info, a)
    elif a.cmd == "rrpc":
        return rrpc_command(info, a)
    else:
        return thing_command(info, a)
    return 0


def ota_command(info, a):
    """`ota`: serve the package, push the job, print each progress report until 100 or a
    failure (0 when the device downloaded and verified it)."""
    from tools.cloud import ota

    record = UplinkRecord(info["uplinks"])
    staged = ota.stage(info["state_dir"], a.package)
    publish(info, ota.upgrade_topic(a.pk, a.dn), ota.job_message(staged, a.sign_method), 1)
    print("job: version %s, %d bytes, %s, to %s/%s" % (staged["version"], staged["size"], a.sign_method, a.pk, a.dn))
    deadline = time.monotonic() + a.wait
    while time.monotonic() < deadline:
        for step, desc in ota.progress(record.read(), a.pk, a.dn):
            print("progress %s%s" % (step, " " + desc if desc else ""), flush=True)
            if step == 100 or step < 0:
                return 0 if step == 100 else 1
        time.sleep(0.2)
    return 1 if a.wait > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
