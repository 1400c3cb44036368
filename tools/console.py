#!/usr/bin/env python3
"""The cloud-side console of the local Aliyun (tools/cloud.py), like Aliyun's web console.

    python tools/console.py --state DIR watch PK DN          # print a device's uplinks as they arrive
    python tools/console.py --state DIR publish TOPIC PAYLOAD [--qos 1]   # downlink
    python tools/console.py --state DIR devices              # registry + who is online

--state is the cloud's state directory (or its cloud.json), where the running cloud wrote its
ports and the privileged console credentials (new ones at every cloud start). The console is
an MQTT client with those credentials: it may publish to any topic, and it reads uplinks
from the broker's $cloud/uplink/{pk}/{dn} copies (each carries the device's publish QoS).
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

if __package__ in (None, ""):  # run as `python tools/console.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paho.mqtt.client as mqtt

UPLINK_ENVELOPE = "$cloud/uplink"


def load_info(state):
    path = os.path.join(state, "cloud.json") if os.path.isdir(state) else state
    with open(path) as f:
        return json.load(f)


def console_client(info, client_id=None):
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


def console_publish(info, topic, payload, qos=0, timeout=5.0):
    """Publish one downlink as the privileged client. Returns once the broker has handed it
    to its subscribers: the console subscribes to the same topic and waits for the echo, so
    closing the connection right after cannot lose the message."""
    if isinstance(payload, str):
        payload = payload.encode()
    c = console_client(info)
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


def _show(rec):
    try:
        text = rec["payload"].encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        text = rec["payload"].encode("latin-1").hex()
    stamp = time.strftime("%H:%M:%S", time.localtime(rec["ts"])) + ".%03d" % (rec["ts"] % 1 * 1000)
    return "%s qos%d %s %s" % (stamp, rec["qos"], rec["topic"], text)


def watch(info, pk, dn, out=sys.stdout, stop=None):
    c = console_client(info)

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, help="the cloud's state directory or its cloud.json")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch", help="print a device's uplinks as they arrive")
    w.add_argument("pk")
    w.add_argument("dn")
    p = sub.add_parser("publish", help="send a downlink (console 'publish message')")
    p.add_argument("topic")
    p.add_argument("payload")
    p.add_argument("--qos", type=int, default=0, choices=(0, 1))
    sub.add_parser("devices", help="list the registry and who is online")
    k = sub.add_parser("kick", help="disconnect a device server-side")
    k.add_argument("pk")
    k.add_argument("dn")
    a = ap.parse_args(argv)
    info = load_info(a.state)
    if a.cmd == "watch":
        watch(info, a.pk, a.dn)
    elif a.cmd == "publish":
        console_publish(info, a.topic, a.payload, a.qos)
        print("published %d bytes to %s (qos %d)" % (len(a.payload.encode()), a.topic, a.qos))
    elif a.cmd == "devices":
        for d in control(info, "devices")["devices"]:
            print("%-12s %-24s active=%-5s online=%s" % (d["productKey"], d["deviceName"],
                                                         d["active"], d["online"]))
    elif a.cmd == "kick":
        print("kicked %d connection(s)" % control(info, "kick", productKey=a.pk, deviceName=a.dn)["kicked"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
