# The app behind main.py: config -> UART -> module -> link, then the loop: publish a small
# JSON telemetry message every `interval` seconds and log every downlink. `current` holds
# the running App so the REPL can reach it after Ctrl-C (see firmware/diag.py).
import json

from firmware import aliyun, config, log
from firmware.air72x import Air72x
from firmware.link import Link
from firmware.port import const, sleep_ms, ticks_add, ticks_diff, ticks_ms
from firmware.uart import open_uart

_TAG = "app"
_LOOP_MS = const(5)
_LEVELS = {"debug": log.DEBUG, "info": log.INFO, "warn": log.WARN, "error": log.ERROR}

current = None


def printable(payload):
    """A downlink payload as one log-safe line."""
    try:
        text = payload.decode()
    except UnicodeError:
        return "0x" + payload.hex() if hasattr(payload, "hex") else repr(payload)
    if "\r" in text or "\n" in text:
        return repr(text)
    return text


def _watchdog(cfg):
    if not cfg["wdt_ms"]:
        return None
    try:
        from machine import WDT

        return WDT(timeout=cfg["wdt_ms"]).feed
    except (ImportError, AttributeError, ValueError) as e:
        log.error(_TAG, "wdt_ms is set but no watchdog here: %r", e)
        return None


def _reset_pulse(cfg):
    pin_no = cfg["reset_pin"]
    if pin_no is None:
        return None
    from machine import Pin

    pin = Pin(pin_no, Pin.OUT, value=0)

    def reset():  # high for 300 ms through the dev board's transistor pulls RESET_IN low
        pin.value(1)
        sleep_ms(300)
        pin.value(0)

    return reset


class App:
    def __init__(self, cfg, uart=None):
        global current
        current = self
        log.level = _LEVELS[cfg["log_level"]]
        self.cfg = cfg
        self.modem = Air72x(uart if uart is not None else open_uart(cfg["uart"]))
        self.topics = aliyun.Topics(cfg["product_key"], cfg["device_name"])
        self.link = Link(self.modem, cfg, self.topics, reset=_reset_pulse(cfg), feed=_watchdog(cfg))
        self.link.on_message = self.on_message
        self.seq = 0
        self.started = ticks_ms()

    def on_message(self, topic, payload):
        log.info(_TAG, "downlink %s %s", topic, printable(payload))

    def telemetry(self):
        self.seq += 1
        return json.dumps({"seq": self.seq, "uptime_s": ticks_diff(ticks_ms(), self.started) // 1000})

    def run(self, until=None):
        """The main loop; `until()` returning True ends it (tests). Never raises."""
        interval = int(self.cfg["interval"] * 1000)
        due = ticks_ms()
        while until is None or not until():
            self.link.step()
            if ticks_diff(ticks_ms(), due) >= 0:
                due = ticks_add(due, interval)
                try:
                    self.link.publish(self.topics.update, self.telemetry(), self.cfg["qos"])
                except ValueError as e:
                    log.error(_TAG, "telemetry not sent: %s", e)
            sleep_ms(_LOOP_MS)


def main(path=config.PATH):
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        log.error(_TAG, "%s", e)
        return None
    app = App(cfg)
    log.info(_TAG, "device %s/%s, flow %s, %s", cfg["product_key"], cfg["device_name"], cfg["auth"], "TLS" if cfg["tls"] else "TCP")
    try:
        app.run()
    except KeyboardInterrupt:
        print("stopped. From the REPL: import firmware.diag as d; d.report()")
    return app
