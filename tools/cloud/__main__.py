"""`python -m tools.cloud`: the local cloud process, the auth endpoint over HTTP and HTTPS
(auth.py) and the MQTT broker (broker.py) in one asyncio process sharing one CloudState
(registry.py).

    python -m tools.cloud --registry tools/cloud/demo_devices.json --state DIR [--mitm]

prints its ports, writes DIR/cloud.json (ports, CA file, console credentials) for the
console (console.py) and for LocalCloud (api.py), persists devices and tokens in
DIR/state.json and appends every device publish to DIR/uplinks.jsonl. The control API
(/_cloud/<op> on the auth port, console password) restarts or crashes the broker, kicks a
device, moves the clock, reports counters. TLS: the local cloud's own CA and the server
certificate it issued for 127.0.0.1, localhost and the Aliyun host names the firmware uses,
made with the `openssl` command into DIR/tls/ (certs.py; clients trust cloud.json's
ca_file); the broker's TLS port, the TLS side of its plain port and the HTTPS auth endpoint
present it. --mitm: they present a certificate for the same names from another CA instead
(a man in the middle), which a client that verifies refuses.
"""
import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading

from tools.cloud import rrpc, shadow
from tools.cloud.auth import AuthHTTPServer
from tools.cloud.broker import AliyunBroker, broker_config, listener_port
from tools.cloud.certs import OpensslMissing, make_pki
from tools.cloud.registry import TOKEN_LIFETIME, CloudState

CONSOLE_USER = "cloud-console"


async def _serve(args, st, console, pki):
    loop = asyncio.get_running_loop()
    ca = pki["ca"]
    crt, key = pki["rogue" if args.mitm else "server"]
    broker_stats = {"connects": 0, "tls_refused": 0}  # kept across broker restarts
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
                             dual_tls=(crt, key), stats=broker_stats)
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
        if op == "shadow":
            return shadow.document(st, form["productKey"], form["deviceName"])
        if op == "shadow_desired":  # the console's "update desired": the control goes out at once
            v = form.get("version")
            version, out = shadow.set_desired(st, form["productKey"], form["deviceName"], json.loads(form["desired"]),
                                              int(v) if v else None)
            for topic, payload in out:
                call(holder["broker"].downlink(topic, payload, 1))
            return {"version": version}
        if op == "rrpc":
            def publish(topic, payload):
                call(holder["broker"].downlink(topic, payload))

            def online(pk, dn):
                return call(on_loop(lambda: holder["broker"].online(pk, dn)))

            return rrpc.call(st, publish, online, form["productKey"], form["deviceName"],
                             base64.b64decode(form.get("RequestBase64Byte", "")),
                             int(form.get("Timeout") or rrpc.TIMEOUT_MS))
        if op == "stats":
            return {"broker": dict(broker_stats),
                    "auth": {"requests": http.requests + https.requests, "tls_refused": https.tls_refused}}
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
    https = AuthHTTPServer(st, args.host, args.auths_port, control=control, control_token=console[1],
                           verbose=args.verbose, tls=(crt, key))
    threading.Thread(target=https.serve_forever, name="auth-https", daemon=True).start()
    info = {
        "pid": os.getpid(), "host": args.host,
        "auth_url": "http://%s:%d" % (args.host, http.port), "auth_port": http.port,
        "auths_url": "https://%s:%d" % (args.host, https.port), "auths_port": https.port,
        "mqtt_port": ports[0], "mqtts_port": ports[1], "ca_file": ca,
        "rogue_ca_file": pki["rogue_ca"], "mitm": bool(args.mitm),
        "console": {"username": console[0], "password": console[1]},
        "uplinks": uplink_path, "state_dir": args.state,
    }
    info_path = os.path.join(args.state, "cloud.json")
    with open(info_path + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(info_path + ".tmp", info_path)
    print("local aliyun: auth %s %s  mqtt tcp %s:%d  mqtt tls %s:%d  (CA %s%s)" % (
        info["auth_url"], info["auths_url"], args.host, ports[0], args.host, ports[1], ca,
        "; presenting the man in the middle's certificate" if args.mitm else ""), flush=True)
    print("console: python -m tools.cloud.console --state %s watch PK DN" % args.state, flush=True)

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
    for server in (http, https):
        server.shutdown()
        server.server_close()
    try:
        await asyncio.wait_for(holder["broker"].shutdown(), 10)
    except Exception as e:  # exiting anyway
        print("broker shutdown: %r" % e, flush=True)
    st.save()
    uplink_file.close()
    if orphaned and args.remove_state_if_orphaned:
        shutil.rmtree(args.state, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.cloud", description="Local Aliyun IoT: auth endpoint + MQTT broker")
    ap.add_argument("--registry", help="JSON file {products: [...], devices: [...]}")
    ap.add_argument("--state", required=True, help="state directory (cloud.json, state.json, tls/, uplinks.jsonl)")
    ap.add_argument("--host", default="127.0.0.1", help="address every listener binds (default 127.0.0.1)")
    ap.add_argument("--auth-port", type=int, default=0, help="the plain HTTP auth endpoint's port (0: free)")
    ap.add_argument("--mqtt-port", type=int, default=0, help="the broker's plain TCP port (0: free)")
    ap.add_argument("--mqtts-port", type=int, default=0, help="the broker's TLS port (0: free)")
    ap.add_argument("--auths-port", type=int, default=0, help="the HTTPS auth endpoint's port (0: free)")
    ap.add_argument("--mitm", action="store_true",
                    help="the TLS listeners present a certificate from another CA (a man in the middle)")
    ap.add_argument("--token-lifetime", type=float, default=TOKEN_LIFETIME,
                    help="seconds an iotToken of the http flow is valid (default: Aliyun's 7 days)")
    ap.add_argument("--lenient-securemode", action="store_true",
                    help="accept securemode=2/3 on either listener")
    ap.add_argument("--resources", choices=("aliyun", "local"), default="aliyun",
                    help="MQTT server named by /auth/devicename: Aliyun's host name and 1883, or this broker")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this parent goes away")
    ap.add_argument("--remove-state-if-orphaned", action="store_true",
                    help="delete --state when exiting because the parent went away")
    ap.add_argument("--verbose", action="store_true", help="log every request and the broker's debug lines")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        logging.getLogger("transitions").setLevel(logging.WARNING)

    os.makedirs(args.state, exist_ok=True)
    reg = {}
    if args.registry:
        with open(args.registry) as f:
            reg = json.load(f)
    try:
        pki = make_pki(os.path.join(args.state, "tls"), args.host)
    except OpensslMissing as e:
        raise SystemExit("local aliyun: %s" % e) from None
    st = CloudState(devices=reg.get("devices", []), products=reg.get("products", []), state_dir=args.state,
                    token_lifetime=args.token_lifetime, mqtt_host=args.host,
                    strict_securemode=not args.lenient_securemode, resources=args.resources)
    console = (CONSOLE_USER, secrets.token_hex(16))  # new credentials at every start
    asyncio.run(_serve(args, st, console, pki))
    return 0


if __name__ == "__main__":
    sys.exit(main())
