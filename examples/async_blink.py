# An asyncio app: the link runs as a task beside your own tasks (a blinking LED, a button,
# telemetry, commands from the cloud), and none of them waits for the module: connecting,
# a reconnect or a PUBACK round trip hold the loop no longer than one read of the UART.
# Copy to the board as main.py (config.json beside it); on a PC: micropython
# examples/async_blink.py. Publish {"blink_ms": 100} to /{pk}/{dn}/user/cmd to change the
# blink rate; the device answers on user/update.
import asyncio
import json

from firmware.device import Device
from firmware.port import ticks_add, ticks_diff, ticks_ms

INTERVAL_MS = 3000  # telemetry

try:
    from machine import Pin

    led = Pin(25, Pin.OUT)  # the Pico's LED; any GPIO on an ESP32
    button = Pin(14, Pin.IN, Pin.PULL_UP)  # to GND when pressed
except (ImportError, AttributeError):  # on a PC: no pins, the blinks are only counted
    led = button = None

dev = Device().aio()  # config.json, checked; the asyncio front over the same Device
dev.subscribe("user/cmd")  # no handler: its downlinks come out of dev.messages()
blink = {"ms": 250, "n": 0, "late_ms": 0}


async def blinker():
    """Toggles the LED every blink["ms"]; late_ms: the most it ever ran late."""
    due = ticks_ms()
    while True:
        due = ticks_add(due, blink["ms"])
        await asyncio.sleep_ms(max(0, ticks_diff(due, ticks_ms())))
        blink["late_ms"] = max(blink["late_ms"], ticks_diff(ticks_ms(), due))
        blink["n"] += 1
        if led:
            led.value(blink["n"] & 1)


async def buttons():
    was = 1
    while True:
        await asyncio.sleep_ms(20)
        now = button.value() if button else 1
        if was and not now:  # pressed: QoS 0, sent once the module is free
            await dev.publish("user/update", '{"button": "pressed"}', qos=0)
        was = now


async def telemetry():
    while True:
        if dev.up:
            msg = {"blinks": blink["n"], "late_ms": blink["late_ms"], "uptime_s": dev.uptime_s()}
            ok = await dev.publish("user/update", json.dumps(msg))  # QoS 1: returns after the PUBACK
            print("telemetry", "acked" if ok else "dropped by the outbox", blink["n"])
        await asyncio.sleep_ms(INTERVAL_MS)


async def commands():
    async for topic, payload in dev.messages():  # in order; a full queue drops the oldest (counted)
        if not topic.endswith("/user/cmd"):
            print("downlink on", topic, len(payload), "bytes")
            continue
        try:
            ms = int(json.loads(payload)["blink_ms"])
            if not 20 <= ms <= 5000:
                raise ValueError(ms)
        except (ValueError, KeyError, TypeError):
            await dev.publish("user/update", '{"error": "expected {\\"blink_ms\\": 20..5000}"}', qos=0)
            continue
        blink["ms"] = ms
        print("blink", ms)
        await dev.publish("user/update", json.dumps({"blink_ms": ms}), qos=0)


async def main():
    dev.start()  # the link's supervisor: connects, recovers, sends, takes in downlinks
    await asyncio.gather(blinker(), buttons(), telemetry(), commands())


asyncio.run(main())
