# A lamp with a device shadow and an RRPC call. A server sets the desired state (the
# console's "update desired" or the UpdateDeviceShadow API); the device applies it, reports
# it and clears desired, also for what was set while it was away (the shadow is read after
# every connect). A server's RRpc call "status" is answered at once with the lamp's state.
from firmware.device import Device

dev = Device()
lamp = {"color": "white", "brightness": 50}


def on_desired(desired):  # apply what we can; what is returned is reported
    for k in ("color", "brightness"):
        if k in desired:
            lamp[k] = desired[k]
    print("applied", desired)
    return dict(lamp)


def on_rrpc(payload):  # bytes in; bytes, text or a dict out (within the platform's 8 s)
    if payload == b"status":
        return {"lamp": lamp, "uptime_s": dev.uptime_s()}
    return b"unknown request"


def on_up():
    dev.shadow.report(lamp)


dev.shadow.on_desired = on_desired
dev.on_rrpc = on_rrpc
dev.on_up = on_up
dev.run()
