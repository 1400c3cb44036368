# The demo behind main.py, on top of the library's API (firmware/device.py): publish a small
# JSON telemetry message every `interval` seconds and log every downlink. `current` holds
# the running App so the REPL can reach it after Ctrl-C (see firmware/diag.py).
# RAM: what a device does not use is not imported (the thing model, NTP, registration),
# and the config checker is dropped once config.json has been read.
import gc
import json

from firmware import log
from firmware.device import Device
from firmware.port import drop, sleep_ms, ticks_add, ticks_diff, ticks_ms

_TAG = "app"

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


class App(Device):
    """The demo: a JSON telemetry message every `interval` seconds, every downlink logged,
    with the thing model: uptime and rssi posted, property sets logged, a "ping" service."""

    def __init__(self, cfg, uart=None):
        global current
        super().__init__(cfg, uart)  # imported after config.json was read: a lower peak
        current = self
        self.on_message = self.log_downlink
        self.on_up = self.post_properties
        if self.thing:
            self.thing.on_set(self.on_property_set)
            self.thing.on_service("ping", self.on_ping)
        self._prop_due = None
        self._due = self._stats_due = ticks_ms()
        self.seq = 0

    def log_downlink(self, topic, payload):
        if log.level <= log.INFO:  # nothing to make when the line would not be logged
            log.info(_TAG, "downlink %s %s", topic, printable(payload))

    def post_properties(self):
        if self.thing is None:
            return
        params = {"uptime": self.uptime_s()}
        try:
            params["rssi"] = self.modem.signal()[0]
        except Exception as e:  # the link notices a dead module itself
            log.debug(_TAG, "no rssi: %s", log.err(e))
        self._prop_due = ticks_add(ticks_ms(), int(self.cfg.get("property_interval", 60) * 1000)) if self.cfg.get("property_interval") else None
        self.thing.post_properties(params, self.on_property_reply)

    def on_property_reply(self, rid, code, data):
        log.info(_TAG, "property post %s: code %s%s", rid, code, " (no reply in time)" if code == -1 else "")

    def on_property_set(self, params):
        log.info(_TAG, "property set %s", json.dumps(params))

    def on_ping(self, params):
        return 200, {"uptime": self.uptime_s(), "seq": self.seq, "echo": params}

    def telemetry(self):
        self.seq += 1
        msg = {"seq": self.seq, "uptime_s": self.uptime_s()}
        ts = self.time()
        if ts is not None:
            msg["ts"] = ts  # Unix epoch ms, once NTP synced
        return json.dumps(msg)

    def run(self, until=None, every=None):
        """The main loop; `until()` returning True ends it (tests). Never raises."""
        try:  # config.check() keeps these finite and inside the clock; a cfg from elsewhere may not
            interval = int(self.cfg["interval"] * 1000)
            stats_ms = int(self.cfg.get("stats_interval", 0) * 1000)
            if not (self.cfg.get("device_secret") or self.cfg.get("device_token")):  # only product_secret: register first
                from firmware import register

                if not register.provision(self.modem, self.cfg, until):
                    return
            self._due = ticks_ms()
            self._stats_due = ticks_add(self._due, stats_ms)
        except Exception as e:
            log.error(_TAG, "not started: %s", log.err(e))
            return
        def tick():
            self._tick(interval, stats_ms)
            if every:
                every()

        Device.run(self, until, tick)

    def _tick(self, interval, stats_ms):
        now = ticks_ms()
        if self._prop_due is not None and self.link.up and ticks_diff(now, self._prop_due) >= 0:
            self.post_properties()
        if stats_ms and ticks_diff(now, self._stats_due) >= 0:
            self._stats_due = ticks_add(now, stats_ms)
            self.link.log_stats()  # the counters of Link.stats(), for logs and the soak
        if ticks_diff(now, self._due) >= 0:
            self._due = ticks_add(self._due, interval)
            try:
                self.publish(self.topics.update, self.telemetry(), self.cfg["qos"])
                log.info(_TAG, "telemetry %d queued", self.seq)
            except Exception as e:  # a bad payload, or no RAM left: say so, keep running
                log.error(_TAG, "telemetry %d not sent: %s", self.seq, log.err(e))


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
