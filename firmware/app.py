# The app behind main.py: config -> UART -> module -> link, then the loop: publish a small
# JSON telemetry message every `interval` seconds and log every downlink. `current` holds
# the running App so the REPL can reach it after Ctrl-C (see firmware/diag.py).
# RAM: what a device does not use is not imported (the thing model, NTP, registration),
# and the config checker is dropped once config.json has been read.
import gc
import json
import sys

from firmware import __version__, log
from firmware.port import const, drop, sleep_ms, ticks_add, ticks_diff, ticks_ms

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
        # imported here, after config.json was read and its checker dropped: a lower peak.
        # The UART and the receive buffer come first, while the heap still has room in one
        # piece (on rp2 machine.UART's rxbuf is in the GC heap too).
        from firmware.at import RXBUF
        from firmware.uart import open_uart

        uart = uart if uart is not None else open_uart(cfg["uart"])
        rx = bytearray(RXBUF)
        from firmware import aliyun
        from firmware.air72x import Air72x
        from firmware.link import Link

        global current
        current = self
        log.level = _LEVELS[cfg["log_level"]]
        self.cfg = cfg
        self.uart = uart
        self.modem = Air72x(uart, rx)
        self.topics = aliyun.Topics(cfg["product_key"], cfg["device_name"])
        self.link = Link(self.modem, cfg, self.topics, reset=_reset_pulse(cfg), feed=_watchdog(cfg))
        self.link.on_message = self.on_message
        self.link.on_up = self.on_up
        self.thing = None
        if cfg.get("thing"):  # thing model: properties, events, services
            from firmware.thing import Thing

            self.thing = Thing(self.link, self.topics)
            self.thing.on_set(self.on_property_set)
            self.thing.on_service("ping", self.on_ping)
        self.ntp = None
        if cfg.get("ntp", True):
            from firmware.ntp import Ntp

            self.ntp = Ntp(self.link, self.topics, cfg.get("ntp_interval", 3600))
        self._prop_due = None
        self._due = self._stats_due = ticks_ms()
        self.seq = 0
        self.started = ticks_ms()

    def on_message(self, topic, payload):
        if self.thing and self.thing.handle(topic, payload):
            return
        if self.ntp and self.ntp.handle(topic, payload):
            return
        log.info(_TAG, "downlink %s %s", topic, printable(payload))

    def on_up(self):
        """After every (re)connect: firmware version (OTA inform), time, properties."""
        try:
            if self.thing:
                self.thing.report_version(__version__)
                self.post_properties()
            else:
                from firmware.aliyun import version_inform

                self.link.publish(self.topics.ota_inform, version_inform("1", __version__), 1)
            if self.ntp:
                self.ntp.on_up()
        except Exception as e:  # never let the demo take the link down
            log.error(_TAG, "on_up: %r", e)

    def post_properties(self):
        if self.thing is None:
            return
        params = {"uptime": ticks_diff(ticks_ms(), self.started) // 1000}
        try:
            params["rssi"] = self.modem.signal()[0]
        except Exception as e:  # the link notices a dead module itself
            log.debug(_TAG, "no rssi: %r", e)
        self._prop_due = ticks_add(ticks_ms(), int(self.cfg.get("property_interval", 60) * 1000)) if self.cfg.get("property_interval") else None
        self.thing.post_properties(params, self.on_property_reply)

    def on_property_reply(self, rid, code, data):
        log.info(_TAG, "property post %s: code %s%s", rid, code, " (no reply in time)" if code == -1 else "")

    def on_property_set(self, params):
        log.info(_TAG, "property set %s", json.dumps(params))

    def on_ping(self, params):
        return 200, {"uptime": ticks_diff(ticks_ms(), self.started) // 1000, "seq": self.seq, "echo": params}

    def telemetry(self):
        self.seq += 1
        msg = {"seq": self.seq, "uptime_s": ticks_diff(ticks_ms(), self.started) // 1000}
        ts = sys.modules["firmware.ntp"].now_ms() if self.ntp else None
        if ts is not None:
            msg["ts"] = ts  # Unix epoch ms, once NTP synced
        return json.dumps(msg)

    def run(self, until=None):
        """The main loop; `until()` returning True ends it (tests). Never raises."""
        try:  # config.check() keeps these finite and inside the clock; a cfg from elsewhere may not
            interval = int(self.cfg["interval"] * 1000)
            stats_ms = int(self.cfg.get("stats_interval", 0) * 1000)
            if not self.cfg.get("device_secret"):  # only product_secret: dynamic registration first
                from firmware import register

                if not register.provision(self.modem, self.cfg, until):
                    return
            self._due = ticks_ms()
            self._stats_due = ticks_add(self._due, stats_ms)
        except Exception as e:
            log.error(_TAG, "not started: %s", log.err(e))
            return
        while until is None or not until():
            try:
                self._tick(interval, stats_ms)
            except Exception as e:  # nothing escapes the loop (MemoryError included)
                log.error(_TAG, "loop: %r", e)
            sleep_ms(_LOOP_MS)

    def _tick(self, interval, stats_ms):
        self.link.step()
        if self.thing:
            self.thing.poll()
        if self.ntp:
            self.ntp.poll()
        now = ticks_ms()
        if self._prop_due is not None and self.link.up and ticks_diff(now, self._prop_due) >= 0:
            self.post_properties()
        if stats_ms and ticks_diff(now, self._stats_due) >= 0:
            self._stats_due = ticks_add(now, stats_ms)
            self.link.log_stats()  # the counters of Link.stats(), for logs and the soak
        if ticks_diff(now, self._due) >= 0:
            self._due = ticks_add(self._due, interval)
            try:
                self.link.publish(self.topics.update, self.telemetry(), self.cfg["qos"])
            except Exception as e:  # a bad payload, or no RAM left: say so, keep running
                log.error(_TAG, "telemetry %d not sent: %r", self.seq, e)


def load_config(path=None):
    """config.json checked, or None (the error logged). The checker is dropped afterwards:
    it is not needed again and its messages cost RAM."""
    from firmware import config

    try:
        return config.load(path or config.PATH)
    except config.ConfigError as e:
        log.error(_TAG, "%s", e)
        return None
    finally:
        del config
        drop("firmware.config")
        gc.collect()


def start(cfg, until=None):
    """App(cfg) once its UART opens, or None. A UART that may open later (nothing listens at
    the socket:// URL yet, the USB adapter is unplugged) is tried again, waiting
    backoff_min_ms doubling to backoff_max_ms, until `until()`; one that cannot (a pin this
    board's UART does not take, no pyserial) is given up at once. Each failure: one line."""
    from firmware.uart import UARTError

    wait = cfg.get("backoff_min_ms", 1000)
    while True:
        try:
            return App(cfg)
        except UARTError as e:
            log.error(_TAG, "%s%s", e, "" if e.retry else " (not retried)")
            if not e.retry or (until is not None and until()):
                return None
        log.info(_TAG, "opening the UART again in %d ms", wait)
        sleep_ms(wait)
        wait = min(wait * 2, cfg.get("backoff_max_ms", 60000))


def main(path=None):
    """Run the firmware; None when it cannot start (config.json or its UART: main.py then
    exits non-zero on a PC), else the App after the loop ended (Ctrl-C)."""
    app = None
    try:
        cfg = load_config(path)
        if cfg is None:
            return None
        app = start(cfg)
        if app is None:
            return None
        log.info(_TAG, "device %s/%s, auth %s, %s", cfg["product_key"], cfg["device_name"], cfg["auth"], "TLS" if cfg["tls"] else "TCP")
        app.run()
    except KeyboardInterrupt:
        print("stopped. From the REPL: import firmware.diag as d; d.report()")
    return app
