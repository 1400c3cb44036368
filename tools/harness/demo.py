"""`make sim` (python -m tools.harness.demo): the firmware end to end without a board, a SIM
card or an Aliyun account.

Starts the local cloud (tools/cloud/) and a virtual Air724 module (tools/sim/),
runs the real main.py under the `micropython` interpreter against them for each flow
("mqtt" direct sign, then "http" token auth), names each step of the seed procedure as
the module sees it, proves a round trip (an uplink seen at the cloud, a console downlink
printed by the firmware), then the thing model: the OTA version inform, NTP time, a property
post answered by the platform and a property set answered by the device; then the device
shadow (a desired state set from the console, applied and reported) and an RRPC call
answered (examples/shadow_rrpc.py); then an over-the-air update (docs/ota.md) of the firmware
on a virtual board's flash: a package of this tree as 1.3.0 applied, and a broken 9.0.0 rolled
back. It prints a summary. Exit 0 when every part passed; otherwise 1
with the failing step named. Nothing is left running.
"""
import argparse
import json
import sys
import time

from firmware import __version__
from firmware.aliyun import Topics
from tools.cloud.api import LocalCloud
from tools.harness.env import DEMO, SimEnv

DEMO_PK, DEMO_DN = DEMO["productKey"], DEMO["deviceName"]

# (command prefix, step name) in the order of the seed walkthrough (the Chinese guide the
# project started from: autobaud, attach, HTTP auth, MQTT, application data)
STEPS = [
    ("AT+CGMR", "1. autobaud (AT until OK), echo off, firmware version >= V409"),
    ("AT+CPIN?", "   SIM ready, signal"),
    ("AT+CGATT?", "2. packet attach (AT+CGATT? until 1)"),
    ("AT+SAPBR=1,1", "   bearer open (SAPBR CONTYPE, APN)"),
    ("AT+HTTPDATA", "3. HTTP auth: body signed on the device, exact byte length"),
    ("AT+HTTPACTION", "   POST https://iot-auth.<region>.aliyuncs.com/auth/devicename"),
    ("AT+HTTPREAD", "   iotId / iotToken read by count, HTTPTERM"),
    ("AT+MCONFIG", "4. MQTT credentials (MCONFIG)"),
    ("AT+SSLMIPSTART", "   TLS connect to <pk>.iot-as-mqtt.<region>.aliyuncs.com:1883"),
    ("AT+MIPSTART", "   TCP connect to <pk>.iot-as-mqtt.<region>.aliyuncs.com:1883"),
    ("AT+MCONNECT", "   MCONNECT the moment CONNECT OK arrives; CONNACK OK"),
    ("AT+MQTTMSGSET=0", "5. downlinks pushed as +MSUB URCs (MQTTMSGSET=0)"),
    ("AT+MSUB", "   subscribe /<pk>/<dn>/user/get"),
    ('AT+MPUB="/a1DemoPk001/demo-device-1/user/update"', "   publish telemetry to /<pk>/<dn>/user/update"),
]
DOWNLINK = 'hello from the console, "quoted", 你好'


class StepFailed(Exception):
    pass


def show(cmd):
    """A command as shown to the user: credentials in MCONFIG are not printed."""
    if cmd.startswith("AT+MCONFIG="):
        return 'AT+MCONFIG="<clientId>","<username>","<password>"'
    return cmd if len(cmd) < 90 else cmd[:87] + "..."


def thing_steps(env, wait):
    """Issue #8 on top: version inform, NTP, a property post and a property set, each a
    round trip between the firmware and the cloud."""
    fw, cloud = env.firmware, env.cloud
    pk, dn = env.device["productKey"], env.device["deviceName"]
    t = Topics(pk, dn)

    def uplink(topic, timeout=20):
        return wait("uplink on " + topic, lambda s: cloud.wait_uplink(lambda tp, p: tp == topic, s, since=env.mark), timeout)

    _, payload, _ = uplink(t.ota_inform)
    print("  OTA version inform %s %s" % (t.ota_inform, payload.decode()))
    line = wait("NTP time", lambda s: fw.wait_log("ntp: time set", timeout=s), 20)
    print("  NTP over MQTT      %s" % line.split(" ntp: ", 1)[1])
    _, payload, _ = uplink(t.property_post)
    rid = json.loads(payload)["id"]
    print("  property post      %s %s" % (t.property_post, payload.decode()))
    line = wait("property post reply", lambda s: fw.wait_log("app: property post %s: code" % rid, timeout=s), 20)
    print("  platform replied   %s  -> firmware: %s" % (t.property_post_reply, line.split(" app: ", 1)[1]))
    mark = len(fw.lines)
    params = {"LightSwitch": 1}
    rid = cloud.set_properties(pk, dn, params)
    print("  property set       %s id %s %s" % (t.property_set, rid, json.dumps(params)))
    line = wait("property set handler", lambda s: fw.wait_log("app: property set", timeout=s, since=mark), 20)
    print("  firmware handler   %s" % line.split(" app: ", 1)[1])
    reply = wait("property set reply", lambda s: cloud.wait_reply(pk, dn, rid, timeout=s, since=env.mark), 20)
    if reply.get("id") != rid or reply.get("code") != 200:
        raise StepFailed("property set reply: %r" % (reply,))
    print("  cloud got reply    %s %s" % (t.property_set_reply, json.dumps(reply)))


def shadow_rrpc(cloud, verbose):
    """Issue 25: examples/shadow_rrpc.py on the Device API. A desired state set from the
    console reaches the device as a control, is applied, reported and cleared; an RRPC call
    is answered inside the platform's 8 s."""
    import os

    from tools.proc import ROOT

    echo = (lambda line: print("      | " + line)) if verbose else None
    result = {"flow": "shadow"}
    with SimEnv(cloud=cloud, echo=echo, start_firmware=False) as env:
        pk, dn = env.device["productKey"], env.device["deviceName"]
        fw = env.run_firmware(script=os.path.join(ROOT, "examples", "shadow_rrpc.py"))
        try:
            fw.wait_log("link: mqtt -> up", timeout=45)
            t = Topics(pk, dn)
            _, payload, _ = cloud.wait_uplink(lambda tp, p: tp == t.shadow_update and b'"reported"' in p, 20, since=env.mark)
            print("  shadow report      %s %s" % (t.shadow_update, payload.decode()))
            desired = {"color": "green", "brightness": 80}
            v = cloud.set_desired(pk, dn, desired)
            print("  console desired    %s version %d (a control on %s)" % (json.dumps(desired), v, t.shadow_get))
            deadline = time.monotonic() + 20
            doc = cloud.shadow(pk, dn)
            while not (doc["version"] > v and not doc["state"]["desired"]):
                if time.monotonic() > deadline:
                    raise StepFailed("the desired state was not applied and reported: %r" % (doc,))
                time.sleep(0.1)
                doc = cloud.shadow(pk, dn)
            print("  device applied     reported %s, desired cleared, version %d" % (
                json.dumps(doc["state"]["reported"]), doc["version"]))
            out = cloud.rrpc(pk, dn, b"status")
            if out["RrpcCode"] != "SUCCESS":
                raise StepFailed("RRPC call: %s" % out["RrpcCode"])
            print("  RRPC call          %s%s \"status\" -> %s (%d ms, the platform waits 8000)" % (
                t.rrpc_request, out["MessageId"], out["payload"].decode(), out["ms"]))
            if "Traceback" in fw.text():
                raise StepFailed("an exception escaped in the firmware:\n" + fw.text()[-2000:])
        except (StepFailed, TimeoutError) as e:
            result["error"] = "shadow/RRPC failed: %s" % e
    return result


def run_flow(flow, cloud, verbose):
    started = time.monotonic()
    seen = set()
    result = {"flow": flow}
    echo = (lambda line: print("      | " + line)) if verbose else None
    # the module's realistic delays: TCP/TLS connect ~1.4 s, an HTTPS request ~0.5 s
    # the thing model is off by default (RAM): the demo turns it on
    with SimEnv(flow=flow, cloud=cloud, echo=echo, cfg={"thing": True}, vm={"connect_delay": 1.4, "http_delay": 0.5}) as env:
        fw, vm = env.firmware, env.vm
        step = "bring-up"

        def progress():
            for cmd in list(vm.commands):
                for prefix, name in STEPS:
                    if cmd.startswith(prefix) and prefix not in seen:
                        seen.add(prefix)
                        print("  %-62s %s" % (name, show(cmd)))

        def wait(what, fn, timeout):
            deadline = time.monotonic() + timeout
            while True:
                progress()
                try:
                    return fn(min(0.2, max(0.01, deadline - time.monotonic())))
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise StepFailed("%s: not within %d s\n%s" % (what, timeout, "\n".join(fw.lines[-15:])))

        try:
            step = "link up"
            wait(step, lambda t: fw.wait_log("link: mqtt -> up", timeout=t), 45)
            result["connected_s"] = time.monotonic() - started
            result["at_commands"] = len(vm.commands)
            step = "uplink at the cloud"
            topic, payload, qos = wait(step, lambda t: env.wait_uplink(timeout=t), 20)
            progress()
            print("  cloud saw uplink   %s %s (QoS %d)" % (topic, payload.decode(), qos))
            step = "downlink printed by the firmware"
            mark = len(fw.lines)
            env.cloud.publish(env.topics["get"], DOWNLINK.encode(), 1)
            line = wait(step, lambda t: fw.wait_log("app: downlink", timeout=t, since=mark), 20)
            if DOWNLINK not in line:
                raise StepFailed("%s: payload changed on the way: %r" % (step, line))
            print("  firmware printed   %s" % line.split(" app: ", 1)[1])
            thing_steps(env, wait)
            if "Traceback" in fw.text():
                raise StepFailed("an exception escaped in the firmware:\n" + fw.text()[-2000:])
        except StepFailed as e:
            result["error"] = "%s flow failed at step '%s': %s" % (flow, step, e)
        except Exception as e:  # a harness failure names its step too
            result["error"] = "%s flow failed at step '%s': %r" % (flow, step, e)
    return result


def ota_demo(cloud, verbose):
    """An update and a rollback, the firmware running from a board's flash (boot.py first)."""
    import tempfile

    from tools.ota_package import build

    result = {"flow": "ota"}
    echo = (lambda line: print("      | " + line)) if verbose else None
    tmp = tempfile.mkdtemp(prefix="ota-demo-")
    good = build(tmp + "/good.bin", "1.3.0")[0]
    bad = build(tmp + "/bad.bin", "9.0.0", replace={"main.py": b"raise RuntimeError('broken firmware 9.0.0')\n"})[0]
    t = Topics(DEMO_PK, DEMO_DN)
    with SimEnv(cloud=cloud, flash=True, boots=5, echo=echo, cfg={"ota_boots": 2}) as env:
        fw = env.firmware

        def shown(since):
            for step, desc in cloud.ota_progress(DEMO_PK, DEMO_DN, since):
                print("  progress           %4d  %s" % (step, desc))

        def version(v, since, timeout=120):
            _, payload, _ = cloud.wait_uplink(lambda tp, p: tp == t.ota_inform and json.loads(p)["params"]["version"] == v,
                                              timeout, since)
            print("  OTA version inform %s %s" % (t.ota_inform, payload.decode()))

        try:
            fw.wait_log("link: mqtt -> up", timeout=45)
            mark = len(cloud.uplinks())
            version(__version__, env.mark)
            started = time.monotonic()
            staged = cloud.ota_job(DEMO_PK, DEMO_DN, good)
            print("  job                %s: %s, %d bytes, sha256 %s..." % (
                t.ota_upgrade, staged["version"], staged["size"], staged["sha256"][:16]))
            cloud.wait_uplink(lambda tp, p: tp == t.ota_progress and b'"100"' in p, 120, mark)
            shown(mark)
            version("1.3.0", mark)
            mark = len(cloud.uplinks())
            gets = cloud.ota_served()
            print("  served             %d ranged GETs (HTTPPARA BREAK/BREAKEND), %d bytes; reset, boot.py swapped "
                  "firmware.new -> firmware in %.1f s" % (len(gets), sum(g["bytes"] for g in gets), time.monotonic() - started))
            result["update_s"] = time.monotonic() - started
            before = mark
            cloud.ota_job(DEMO_PK, DEMO_DN, bad)
            print("  job                %s: 9.0.0, whose main.py fails at once" % t.ota_upgrade)
            fw.wait_log("broken firmware 9.0.0", timeout=120)
            print("  new firmware       fails on boot: %d boots allowed (ota_boots)" % 2)
            cloud.wait_uplink(lambda tp, p: tp == t.ota_progress and b'"-1"' in p, 120, mark)
            shown(mark)  # the download's reports, then the rollback's
            version("1.3.0", before)
            result["rolled_back"] = True
        except Exception as e:
            result["error"] = "ota failed: %r\n%s" % (e, "\n".join(fw.lines[-15:]))
    return result


def main():
    ap = argparse.ArgumentParser(prog="python -m tools.harness.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--flow", choices=("mqtt", "http", "both"), default="both", help="which auth flow to run (default both, one after the other)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the firmware's log live")
    args = ap.parse_args()
    flows = ("mqtt", "http") if args.flow == "both" else (args.flow,)
    print("local cloud: auth endpoint + MQTT broker on 127.0.0.1 (demo device a1DemoPk001/demo-device-1)")
    results = []
    with LocalCloud.demo() as cloud:
        for flow in flows:
            print("\n== flow %r: real main.py under micropython, virtual Air724 module ==" % flow)
            results.append(run_flow(flow, cloud, args.verbose))
            if "error" in results[-1]:
                print("  FAILED: " + results[-1]["error"])
        print("\n== device shadow and RRPC: examples/shadow_rrpc.py on the Device API ==")
        results.append(shadow_rrpc(cloud, args.verbose))
        if "error" in results[-1]:
            print("  FAILED: " + results[-1]["error"])
        print("\n== over-the-air update: the firmware on a virtual board's flash, boot.py then main.py ==")
        ota = ota_demo(cloud, args.verbose)
        if "error" in ota:
            print("  FAILED: " + ota["error"])
    print("\nsummary")
    print("  %-6s %-10s %-12s %s" % ("flow", "connected", "AT commands", "round trip"))
    for r in results:
        ok = "error" not in r
        print("  %-6s %-10s %-12s %s" % (
            r["flow"], "%.1f s" % r["connected_s"] if "connected_s" in r else "-",
            r.get("at_commands", "-"), ("ok (desired applied + reported, RRPC answered)" if r["flow"] == "shadow"
                                        else "ok (uplink + downlink, property post + set)") if ok else "FAILED"))
    print("  %-6s %s" % ("ota", "FAILED" if "error" in ota else "1.3.0 applied in %.1f s, 9.0.0 rolled back" % ota["update_s"]))
    failed = [r for r in results + [ota] if "error" in r]
    for r in failed:
        print("\n" + r["error"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
