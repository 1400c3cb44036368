# Telemetry from a sensor: your own JSON, your own interval. Copy to the board as main.py
# (with config.json beside it); on a PC: micropython examples/telemetry.py.
import json

from firmware.device import Device
from firmware.port import ticks_add, ticks_diff, ticks_ms

INTERVAL_MS = 5000


readings = 0


def read_sensor():
    """Your sensor here (an ADC, an I2C thermometer...). This one counts."""
    global readings
    readings += 1
    return 20.0 + (readings % 10) / 10


dev = Device()  # config.json, checked: a wrong field is one line naming it
due = ticks_ms()


def every():
    global due
    if dev.up and ticks_diff(ticks_ms(), due) >= 0:
        due = ticks_add(due, INTERVAL_MS)
        msg = {"temperature": read_sensor(), "uptime_s": dev.uptime_s()}
        t = dev.time()  # Unix ms from the platform's NTP, once it answered
        if t is not None:
            msg["ts"] = t
        dev.publish("user/update", json.dumps(msg))  # QoS 1: kept until the PUBACK


dev.run(every=every)
