# The thing model (Alink JSON): properties up, a property set down, a service call answered.
# Needs "thing": true in config.json and a product with these identifiers (LightSwitch,
# Temperature; a service "toggle") defined in the Aliyun console.
from firmware.device import Device
from firmware.port import ticks_add, ticks_diff, ticks_ms

dev = Device()
assert dev.thing, 'set "thing": true in config.json'
state = {"LightSwitch": 0, "Temperature": 21.5}
due = ticks_ms()


def on_set(params):  # the cloud set properties: apply them, then report the new state
    state.update(params)
    print("set", params)
    dev.thing.post_properties(state)


def toggle(params):  # a service call: (code, output data) is the answer
    state["LightSwitch"] = 0 if state["LightSwitch"] else 1
    return 200, {"LightSwitch": state["LightSwitch"]}


def every():
    global due
    if dev.up and ticks_diff(ticks_ms(), due) >= 0:
        due = ticks_add(due, 10000)
        dev.thing.post_properties(state, lambda rid, code, data: print("post", rid, "code", code))


dev.thing.on_set(on_set)
dev.thing.on_service("toggle", toggle)
dev.run(every=every)
