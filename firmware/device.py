# The library's public surface: one Device per module, for the user's own code. Everything
# else in firmware/ is internal. docs/api.md says what each call raises and how long it may
# block; the demo behind main.py (firmware/app.py) is written on top of this.
#
#   from firmware.device import Device
#   dev = Device()                                  # config.json, checked (or Device(cfg))
#   dev.subscribe("user/cmd", on_cmd)              # on_cmd(topic, payload: bytes)
#   dev.on_message = on_other                      # downlinks no subscription handler took
#   while True:
#       dev.step()                                 # the link: connects, recovers, flushes
#       if dev.up and it_is_time():
#           dev.publish("user/update", '{"t": 21.5}')   # QoS 1: queued, sent, kept until PUBACK
#
# Topics without a leading "/" are the device's own: "user/update" is /{pk}/{dn}/user/update.
# With "thing": true, dev.thing is the Alink thing model (post, on_set, on_service); with
# "ntp": true (the default), dev.time() is the Unix time in ms once the platform answered.
from firmware import __version__, log
from firmware.aliyun import matches  # the link loads aliyun anyway: not per downlink
from firmware.port import const, drop, sleep_ms, ticks_diff, ticks_ms

_TAG = "device"
_LOOP_MS = const(5)
_LEVELS = {"debug": log.DEBUG, "info": log.INFO, "warn": log.WARN, "error": log.ERROR}


def _watchdog(cfg):
    if not cfg["wdt_ms"]:
        return None
    try:
        from machine import WDT

        return WDT(timeout=cfg["wdt_ms"]).feed
    except (ImportError, AttributeError, ValueError) as e:
        log.error(_TAG, "wdt_ms is set but no watchdog here: %s", log.err(e))
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


class Device:
    def __init__(self, cfg=None, uart=None):
        """cfg: a dict from config.load() / config.check(); None reads config.json (a
        ConfigError names the bad field). uart: any UART-like object; None opens cfg["uart"]
        (a UARTError says what to check)."""
        if cfg is None:
            from firmware import config

            try:
                cfg = config.load()
            finally:  # the checker is not needed again, and its messages cost RAM
                del config
                drop("firmware.config")
        # the UART and the receive buffer first, while the heap still has room in one piece
        # (on rp2 machine.UART's rxbuf is in the GC heap too)
        from firmware.at import RXBUF
        from firmware.uart import open_uart

        uart = uart if uart is not None else open_uart(cfg["uart"])
        rx = bytearray(RXBUF)
        from firmware import aliyun
        from firmware.air72x import Air72x
        from firmware.link import Link

        log.level = _LEVELS[cfg["log_level"]]
        self.cfg = cfg
        self.uart = uart
        self.modem = Air72x(uart, rx)
        self.topics = aliyun.Topics(cfg["product_key"], cfg["device_name"])
        self.link = Link(self.modem, cfg, self.topics, reset=_reset_pulse(cfg), feed=_watchdog(cfg))
        self.link.on_message = self._on_message  # pyright: ignore[reportAttributeAccessIssue]
        self.link.on_up = self._on_up  # pyright: ignore[reportAttributeAccessIssue]
        self.on_message = None  # handler(topic, payload) for what no subscription took
        self.on_up = None  # called after every (re)connect
        self._handlers = []  # [(topic filter, handler)]
        self.thing = None
        if cfg.get("thing"):  # thing model: properties, events, services
            from firmware.thing import Thing

            self.thing = Thing(self.link, self.topics)
        self._shadow = None  # the device shadow and RRPC: loaded on first use (dev.shadow,
        self._rrpc = None  # dev.on_rrpc = handler), a device that never uses them pays nothing
        self.ntp = None
        if cfg.get("ntp", True):
            from firmware.ntp import Ntp

            self.ntp = Ntp(self.link, self.topics, cfg.get("ntp_interval", 3600))
        self.ota = None  # firmware/ota.py's Ota: loaded when a job comes or one is pending
        self._trial = False  # a new firmware on trial (firmware/update.py): kept once up
        if cfg.get("ota", True):
            from firmware import update

            self._trial, work = update.pending()
            drop("firmware.update")
            self.link.subscribe(self.topics.ota_upgrade, 0)
            if work:
                self._load_ota()
        self.started = ticks_ms()

    # ------------------------------------------------------------------ the API
    @property
    def up(self):
        """True while the MQTT link is up."""
        return self.link.up

    def publish(self, topic, payload, qos=1):
        """QoS 1: queued at once (never blocks), sent in order by step(), kept until its
        PUBACK (False: the outbox refused it, policy refuse_new). QoS 0: sent now when the
        link is up (False when it is not). TypeError / ValueError for a bad topic, payload
        or QoS, at once and with nothing queued."""
        return self.link.publish(self.topics.expand(topic), payload, qos)

    def subscribe(self, topic, handler=None, qos=0):
        """Subscribe now (when up) and after every reconnect; handler(topic, payload) gets
        the downlinks that match (MQTT wildcards + and #), else on_message does."""
        topic = self.topics.expand(topic)
        self.link.subscribe(topic, qos)
        if handler is not None:
            self._handlers.append((topic, handler))

    @property
    def shadow(self):
        """The device shadow (firmware/shadow.py): report(state), get(), delete(keys),
        on_desired = handler(desired) -> None | dict; .version, .reported, .desired."""
        if self._shadow is None:
            from firmware.shadow import Shadow

            self._shadow = Shadow(self.link, self.topics)
            if self.link.up:  # first used while connected: read the document now
                self._shadow.get()
        return self._shadow

    @property
    def on_rrpc(self):
        return self._rrpc.handler if self._rrpc else None

    @on_rrpc.setter
    def on_rrpc(self, handler):
        """handler(payload: bytes) -> bytes | str | dict | None: the answer to an RRPC
        request (firmware/rrpc.py); subscribes /sys/{pk}/{dn}/rrpc/request/+ on first use."""
        if self._rrpc is None:
            from firmware.rrpc import Rrpc

            self._rrpc = Rrpc(self.link, self.topics)
        self._rrpc.handler = handler

    def time(self):
        """Unix time in ms from the platform's NTP (None before the first answer, or with
        "ntp": false)."""
        if self.ntp is None:
            return None
        import sys

        return sys.modules["firmware.ntp"].now_ms()

    def uptime_s(self):
        return ticks_diff(ticks_ms(), self.started) // 1000

    def stats(self):
        """The link's counters (a new dict): state, reconnects, queued/acked, downlinks..."""
        return self.link.stats()

    def step(self):
        """One turn of the link (connect, recover, send the outbox, take in downlinks) and of
        the thing model and NTP. Never raises; see docs/api.md for how long it may block."""
        self.link.step()
        self.timers()

    def timers(self):
        """The thing model's, NTP's and an update's timers (step() runs them after the link's turn)."""
        self.link.modem.at.run(self.timers_g())

    def timers_g(self):
        """timers() as a generator of the engine (an update's chunk sends commands): the
        asyncio front awaits it."""
        for part in (self.thing, self.ntp):
            if part:
                part.poll()
        if self.ota or self._trial:
            yield from self._ota_step_g()

    def aio(self, queue=16):
        """The asyncio front over this Device (firmware/aio.py, loaded only here): awaited
        publish, messages(), the supervisor as a task. See docs/api.md "asyncio"."""
        from firmware.aio import AsyncDevice

        return AsyncDevice(self, queue)

    def run(self, until=None, every=None):
        """step() in a loop (5 ms apart) until until() is true; every(): the caller's own
        work each turn. Nothing escapes the loop: an exception from every() is logged."""
        while until is None or not until():
            try:
                self.step()
                if every:
                    every()
            except Exception as e:  # nothing escapes the loop (MemoryError included)
                log.error(_TAG, "loop: %s", log.err(e))
            sleep_ms(_LOOP_MS)

    # ------------------------------------------------------------------ internal
    def _load_ota(self):
        if self.ota is None:
            from firmware.ota import Ota

            self.ota = Ota(self.link, self.topics, self.cfg)
        return self.ota

    def _ota_step_g(self):
        """The update's turn: one chunk of a download; a firmware on trial that does not
        connect within ota_trial_s resets the board (a boot counted toward the rollback)."""
        try:
            if self.ota:
                yield from self.ota.poll_g()
            if self._trial and not self.link.up and self.uptime_s() > self.cfg.get("ota_trial_s", 600):
                log.error(_TAG, "new firmware not connected after %d s: resetting", self.uptime_s())
                from firmware.update import reboot

                reboot()
        except Exception as e:  # step() never raises (a reset is SystemExit, not caught)
            log.error(_TAG, "ota: %s", log.err(e))

    def _on_message(self, topic, payload):
        if topic == self.topics.ota_upgrade and self.cfg.get("ota", True):
            self._load_ota().handle(topic, payload)
            return
        if self.thing and self.thing.handle(topic, payload):
            return
        if self.ntp and self.ntp.handle(topic, payload):
            return
        if self._rrpc and self._rrpc.handle(topic, payload):
            return
        if self._shadow and self._shadow.handle(topic, payload):
            return
        for flt, handler in self._handlers:
            if matches(flt, topic):
                handler(topic, payload)
                return
        if self.on_message:
            self.on_message(topic, payload)

    def _on_up(self):
        """After every (re)connect: firmware version (OTA inform), time, the user's on_up."""
        try:
            if self.thing:
                self.thing.report_version(__version__)
            else:
                from firmware.aliyun import version_inform

                self.link.publish(self.topics.ota_inform, version_inform("1", __version__), 1)
            if self.ntp:
                self.ntp.on_up()
            if self._trial:  # the new firmware reached "connected": it stays
                from firmware import update

                update.connected()
                drop("firmware.update")
                self._trial = False
            if self.ota:
                self.ota.report_result()
            if self._shadow:  # a control sent while the device was away: its version is newer
                self._shadow.get()
        except Exception as e:  # never let this take the link down
            log.error(_TAG, "on_up: %s", log.err(e))
        if self.on_up:
            self.on_up()
