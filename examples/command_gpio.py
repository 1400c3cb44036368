# A command from the cloud drives a GPIO and answers. Publish {"led": 1} (or 0) to
# /{pk}/{dn}/user/cmd from the console; the device switches the pin and reports back on
# user/update. On a PC (no machine.Pin) the "pin" is a variable.
import json

from firmware.device import Device

try:
    from machine import Pin

    led = Pin(25, Pin.OUT)  # the Pico's LED; any GPIO on an ESP32
except (ImportError, AttributeError):
    class _Pin:
        v = 0

        def value(self, v=None):
            if v is None:
                return self.v
            self.v = v

    led = _Pin()

dev = Device()


def on_cmd(topic, payload):
    try:
        cmd = json.loads(payload)
        state = 1 if cmd["led"] else 0
    except (ValueError, KeyError, TypeError):
        dev.publish("user/update", json.dumps({"error": "expected {\"led\": 0 or 1}"}))
        return
    led.value(state)
    print("led", state)
    dev.publish("user/update", json.dumps({"led": led.value()}))


dev.subscribe("user/cmd", on_cmd)
dev.run()
