# The link supervisor: a state machine from power-up to connected and back again.
#
#   module -> attach (and open the bearer) -> auth ("http" flow, no valid token) -> mqtt -> up
#
# step() runs at most one phase per call and returns, so the app's loop keeps running while
# the link is down. Every failure leads back to the phase that repairs it: the recovery
# table is _classify() (an error's `kind`, firmware/errors.py) and _on_event() (CLOSED ->
# mqtt, PDP loss -> attach, RDY / SIM removed -> module); entering and leaving a phase run
# _enter() and _leave(). Repeated timeouts pulse the reset pin; no attach resets the module;
# refused credentials wait backoff_refused_ms (a refused *old* token of the "http" flow is
# first replaced by a fresh one at once); a MemoryError is collected, not called a bug.
# Retries after a failure wait backoff_min_ms, doubling to backoff_max_ms, each with jitter
# in [3/4 d, d] (never above the cap). The backoff returns to zero only after the link was
# up for stable_ms, so a link that drops right after connecting is not hammered.
#
# Dead link: the module sends the MQTT PINGREQs itself (the firmware never pings). When
# nothing came from the session for status_ms (default keepalive/2), step() asks
# AT+MQTTSTATU; anything but 1 (or no answer) takes the link down. So a dead session is
# noticed within keepalive/2 + one AT deadline, well inside 1.5 x keepalive.
#
# QoS 1 messages go through the outbox (firmware/outbox.py): publish() only queues them;
# step() sends them in order when up and removes each only after its PUBACK. A publish that
# fails without a PUBACK leaves the message at the head: it is sent again after the
# reconnect (at-least-once: counted as "unacked", a possible duplicate).
#
# How long step() may block (the bound on the app's loop): one phase, i.e. the sum of the
# AT deadlines of the commands that phase sends; a failing command ends the phase at once.
# With the driver's deadlines (firmware/air72x.py) the worst cases are:
#   up      one publish until its OK (15 s) + the rest of the flush budget (flush_ms) +
#           MQTTSTATU 5 s (a PUBACK is never waited for inside a step)
#   module  autobaud 20 x 0.3 s + 4 commands x 5 s = 26 s
#   attach  CGATT? 5 s, or the bearer: 2 x 5 s + SAPBR=1,1 30 s + SAPBR=2,1 5 s = 45 s
#   auth    HTTPINIT..HTTPTERM: 5+5+5+25 + HTTPACTION 60 + HTTPREAD 60 + 5 = 165 s
#   mqtt    MDISCONNECT/MIPCLOSE 10 s + MCONFIG 5 + MIPSTART 30 + MCONNECT 15 + MQTTMSGSET 5
#           + 15 s per subscription = 110 s with the default three (user/get, the NTP
#           response, the OTA jobs), 155 s with the thing model's six
# STEP_BOUND_MS is that worst case (the auth phase). In practice a phase takes what the
# network takes (a few seconds). Every wait inside feeds the watchdog (at.idle = feed),
# so wdt_ms only has to cover the app's own work between two feeds, not a phase.
import gc
import random
import sys

from firmware import aliyun, log
from firmware.air72x import ACK_MS, qos_level, topic_name  # ACK_MS: a PUBACK later: the session is gone
from firmware.errors import ModemError
from firmware.outbox import Outbox
from firmware.port import const, drop, run, ticks_add, ticks_diff, ticks_ms, time_s

_TAG = "link"
# The vendor's bring-up guidance (docs/modules.md): no OK for 90 s: pulse RESET; not
# registered after 2 minutes: flight mode (AT+CFUN=4, AT+CFUN=1) before a full reset.
_ATTACH_MS = const(120000)  # attach must happen within this, else flight mode, then a reset
_ATTACH_POLL_MS = const(1000)
_FLUSH_MS = const(200)  # a step() starts no new outbox publish after this long
_LATER_MAX = const(8)  # QoS 0 publishes a handler may ask for while a command waits
_SILENT_MS = const(90000)  # no answer from the module this long: the reset pin is pulsed
_FLIGHT_MS = const(5000)  # how long flight mode lasts before the radio comes back
_STABLE_MS = const(30000)  # up this long: the backoff starts from the bottom again
_AUTODBAUD_TRIES = const(20)
_RECOVERY_KEEP = const(100)  # recovery times kept for stats()
STEP_BOUND_MS = const(165000)  # longest a single step() can block (see above)
_REFUSED_CODES = (401, 460, 5001, 6200)  # auth answers that a retry will not change

MODULE = "module"
ATTACH = "attach"
AUTH = "auth"
MQTT = "mqtt"
UP = "up"
_ORDER = (MODULE, ATTACH, AUTH, MQTT, UP)


class Link:
    def __init__(self, modem, cfg, topics, reset=None, feed=None):
        self.modem = modem
        self.cfg = cfg
        self.topics = topics
        self.reset = reset  # callable that power-cycles / resets the module, or None
        self.feed = feed  # callable that feeds the watchdog, or None
        if feed:
            modem.at.idle = feed
        uart = cfg.get("uart") or {}
        self.flow = bool(uart.get("flow"))  # RTS/CTS on both ends (AT+IFC=2,2)
        modem.at.baud = uart.get("baud") or 115200  # how long a counted payload takes
        persist = cfg.get("outbox_persist") and (cfg.get("outbox_dir") or "outbox")  # a journal on flash
        self.outbox = Outbox(cfg.get("outbox", 20), cfg.get("outbox_policy", "drop_oldest"), persist or None)
        self.subscriptions = [(topics.get, 0)]
        self.on_message = None  # handler(topic: str, payload: bytes)
        self.on_up = None  # called after every (re)connect
        self.state = MODULE
        # tunables (config fields; tests shrink them)
        self.backoff_min = cfg.get("backoff_min_ms", 1000)
        self.backoff_max = cfg.get("backoff_max_ms", 60000)
        self.backoff_refused = cfg.get("backoff_refused_ms", 600000)  # wrong credentials
        keepalive_ms = cfg.get("keepalive", 300) * 1000
        self.status_ms = cfg.get("status_ms") or keepalive_ms // 2  # MQTTSTATU after this silence
        self.dead_after_ms = keepalive_ms * 3 // 2
        self.attach_ms = _ATTACH_MS
        self.stable_ms = _STABLE_MS
        self.flush_ms = _FLUSH_MS
        self.silent_ms = _SILENT_MS
        # clock and randomness: injectable for tests
        self.ticks = ticks_ms
        self.time = time_s
        self.rand = random.getrandbits
        now = self.ticks()
        self._delay = 0  # current backoff (0: next failure starts at backoff_min)
        self._next = now
        self._attach_deadline = now
        self._token = None  # (user, password, host, port, issued_s) for the "http" flow
        self._token_fresh = False  # fetched since the last successful connect
        self._no_answer = 0  # AT timeouts / failed autobauds since the link was last up
        self._silent_since = now  # ... the first of them
        self._flighted = False  # flight mode was tried since the last attach
        # the module may hold a stale MQTT session: after a board reset (a deploy, the
        # watchdog, a brown-out of the MCU alone) it still holds the last run's, so the first
        # connect of a run closes it, and so does any connect with other credentials
        self._dirty = True
        self._creds = None
        self._unverified = False  # said once: this module cannot verify TLS servers
        self._later = []  # (topic, payload) QoS 0 / (topic, qos) subscriptions asked while busy
        self.defer = False  # True (the asyncio front): publish() and subscribe() never send themselves
        self.left = 0  # QoS 1 messages that left the outbox's head (acked, rejected or dropped)
        self.on_left = None  # called (left, acked) as each leaves: the asyncio front's PUBACK wait
        self._inflight = False  # a QoS 1 publish is waiting for its PUBACK
        self._pubacks = 0  # modem.pubacks when it was sent
        self._ack_due = now  # ... and when its PUBACK is overdue
        self._last_rx = now
        self._up_since = now
        self._down_since = now
        self._ever_up = False
        self.counters = {
            "reconnects": 0,  # times the link went down after being up
            "recoveries": 0,  # times it came back up after that
            "faults": {},  # kind -> count (events and errors)
            "queued": 0,  # QoS 1 messages accepted into the outbox
            "sent": 0,  # QoS 1 publish attempts
            "acked": 0,  # QoS 1 messages that got their PUBACK (left the outbox)
            "unacked": 0,  # attempts that ended without PUBACK: resent (maybe a duplicate)
            "dropped": 0,  # QoS 1 messages the outbox policy dropped or refused
            "rejected": 0,  # QoS 1 messages the driver refused (ValueError): dropped
            "qos0_sent": 0,
            "qos0_dropped": 0,  # QoS 0 messages not sent (link down or publish failed)
            "downlinks": 0,
            "resets": 0,  # reset pin pulses / AT+CFUN=1,1
            "flight_mode": 0,  # AT+CFUN=4 / AT+CFUN=1 after no attach
            "tokens": 0,  # tokens fetched ("http" flow)
            "status_checks": 0,  # AT+MQTTSTATU probes
        }
        self.recovery_ms = []  # how long each outage lasted (the last _RECOVERY_KEEP)
        modem.on_message = self._on_message
        modem.on_event = self._on_event

    # ------------------------------------------------------------------ the app's side
    def step(self):
        """Run one phase (or, when up, poll and flush the outbox). Never raises; blocks at
        most STEP_BOUND_MS (see the top of this file)."""
        g = self._turn()
        if g is not None:
            run(g, self._wait)

    def step_g(self):
        """step() as a generator of the engine: it yields the ms it waits for the module
        (the sync step() sleeps them, the asyncio front awaits them: firmware/aio.py)."""
        g = self._turn()
        if g is not None:
            yield from g

    def _turn(self):
        """The part of a step that never waits (the watchdog, events, what came in): None
        when no command is due, so an idle turn makes no generator; else the generator of
        the rest."""
        if self.feed:
            self.feed()
        try:
            self.modem.deliver()  # events first: they may change the phase
            if self.state == UP:
                return self._guard_g(self._up_g()) if self._up_due() else None
            if ticks_diff(self.ticks(), self._next) >= 0:
                return self._guard_g(self._phase_g())
        except Exception as e:  # every failure has a recovery; nothing escapes the loop
            return self._fail_g(e)
        return None

    def _guard_g(self, g):
        try:
            yield from g
        except Exception as e:  # every failure has a recovery; nothing escapes the loop
            yield from self._fail_g(e)

    def _wait(self, ms):
        self.modem.at._wait(ms)

    @property
    def up(self):
        return self.state == UP

    def publish(self, topic, payload, qos=0):
        """QoS 1: queued (never blocks), sent in order by step(), kept until its PUBACK;
        False if the outbox refused it (policy refuse_new, counted and logged).
        QoS 0: sent now if the link is up; False (counted) if it is not or the send failed.
        With self.defer (the asyncio front), a QoS 0 message is sent by the next step."""
        if qos == 1:  # only queued: no generator to run (check_publish refuses True and 1.0)
            return self._queue(*self.modem.check_publish(topic, payload, qos))
        return run(self.publish_g(topic, payload, qos, self.defer), self._wait)

    def publish_g(self, topic, payload, qos=0, defer=False):
        """publish() as a generator of the engine; defer: queue a QoS 0 message for the next
        step instead of sending it now."""
        topic, payload = self.modem.check_publish(topic, payload, qos)  # TypeError / ValueError
        if qos:
            return self._queue(topic, payload)
        if self.state != UP:
            self.counters["qos0_dropped"] += 1
            log.warn(_TAG, "link %s: QoS 0 message for %s not sent", self.state, topic)
            return False
        if defer or self.modem.busy():  # a handler while a command waits: the next step sends it
            if len(self._later) >= _LATER_MAX:
                self.counters["qos0_dropped"] += 1
                log.warn(_TAG, "QoS 0 message for %s not sent: %d already wait for the module", topic, _LATER_MAX)
                return False
            self._later.append((topic, payload))
            return True
        try:
            yield from self.modem.mqtt_publish_g(topic, payload, 0, checked=True)
            self.counters["qos0_sent"] += 1
            return True
        except ValueError:
            raise  # the caller's payload is wrong: say so to the caller
        except Exception as e:
            self.counters["qos0_dropped"] += 1
            yield from self._fail_g(e)
            return False

    def _queue(self, topic, payload):
        before = self.outbox.dropped
        ok = self.outbox.put(topic, payload)
        dropped = self.outbox.dropped - before
        self.counters["dropped"] += dropped
        if ok:
            self.counters["queued"] += 1
            if dropped:  # drop_oldest: the head made room
                self._left_box(False)
        return ok

    def subscribe(self, topic, qos=0):
        """Subscribe now (if up) and again after every reconnect."""
        topic_name(topic, True)
        qos_level(qos)
        if (topic, qos) not in self.subscriptions:
            self.subscriptions.append((topic, qos))
        if self.state == UP and (self.defer or self.modem.busy()):  # from a handler: the next step does it
            self._later.append((topic, qos))
        elif self.state == UP:
            try:
                self.modem.mqtt_subscribe(topic, qos)
            except Exception as e:
                self._fail(e)

    def stats(self):
        """Counters for the REPL and the logs (a new dict each call)."""
        s = dict(self.counters)
        s["faults"] = dict(self.counters["faults"])
        s["state"] = self.state
        s["outbox"] = len(self.outbox)
        s["outbox_ram_only"] = self.outbox.ram_only  # the journal could not write them
        st = getattr(self.modem, "stats", None) or {}
        s["downlinks_dropped"] = st.get("downlinks_dropped", 0)
        r = sorted(self.recovery_ms)
        if r:
            s["recovery_ms_median"] = r[len(r) // 2]
            s["recovery_ms_p95"] = r[min(len(r) - 1, (len(r) * 95 + 99) // 100 - 1)]
            s["recovery_ms_max"] = r[-1]
        return s

    def log_stats(self):
        log.info(_TAG, "stats %s", _json(self.stats()))

    # ------------------------------------------------------------------ phases
    def _phase_g(self):
        st = self.state
        m = self.modem
        if st == MODULE:
            yield from m.ready_g(_AUTODBAUD_TRIES, self.flow)
            yield from self._verify_g(m)  # before the first HTTPS request (the "http" flow's auth) or TLS link
            self._goto(ATTACH)
            self._next = self.ticks()
        elif st == ATTACH:
            if (yield from m.attached_g()):
                yield from m.bearer_open_g(self.cfg.get("apn"))  # MIPSTART and HTTP both need it
                self._goto(AUTH if self._needs_token() else MQTT)
                self._next = self.ticks()
            elif ticks_diff(self._attach_deadline, self.ticks()) <= 0:
                raise ModemError("not attached after %d s: check antenna, SIM data plan, APN" % (self.attach_ms // 1000), "attach")
            else:
                self._next = ticks_add(self.ticks(), _ATTACH_POLL_MS)
        elif st == AUTH:
            from firmware.auth import http_auth_g  # the "http" flow only, once a week

            try:
                user, password, host, port = yield from http_auth_g(m, self.cfg)
            finally:  # the auth code leaves the heap before the MQTT phase needs it
                drop("firmware.auth")
                drop("firmware.http")
            self._token = (user, password, host, port, self.time())
            self._token_fresh = True
            self.counters["tokens"] += 1
            self._goto(MQTT)
            self._next = self.ticks()
        elif st == MQTT:
            yield from self._connect_g()

    def _needs_token(self):
        if self.cfg.get("auth") != "http":
            return False
        t = self._token
        if t is None:
            return True
        age = self.time() - t[4]
        return age < 0 or age > aliyun.TOKEN_LIFE_S - 86400  # a day before it expires

    def _connect_g(self):
        m = self.modem
        if self._needs_token():
            self._goto(AUTH)
            self._next = self.ticks()
            return
        if self._token:
            cid, user, password, host, port = aliyun.token_credentials(self.cfg, self._token[:4])
        else:
            cid, user, password, host, port = aliyun.credentials(m, self.cfg)
        creds = (cid, user, host, port)  # the password changes with every sign's timestamp
        if self._dirty or creds != self._creds:
            yield from m.mqtt_disconnect_g()  # whatever the module still holds from before
            self._dirty = False
        self._creds = creds
        self._dirty = True  # from here on the module may hold a half-open session
        yield from m.mqtt_connect_g(cid, user, password, host, port, tls=self.cfg["tls"], keepalive=self.cfg["keepalive"])
        for topic, qos in self.subscriptions:  # clean session: every subscription again
            yield from m.mqtt_subscribe_g(topic, qos)
        self._dirty = False
        self._goto(UP)

    def _verify(self, m):
        run(self._verify_g(m), self._wait)

    def _verify_g(self, m):
        """TLS that checks the server: the CA goes to the module once per module boot; a
        module that cannot verify is said once, and the link goes on unverified."""
        need = aliyun.ca_needed(m, self.cfg)
        if need:
            yield from m.load_ca_g(*need)
        elif need is False and not self._unverified:
            self._unverified = True
            log.warn(_TAG, "module %s cannot verify the server's certificate (no AT+SSLCFG): "
                           "TLS is encrypted but unverified", log.safe(m.version, 64))

    def _up_due(self):
        """Up: take in what came; True when a command is due (what handlers asked for, the
        outbox, a PUBACK that came or is overdue, a status check)."""
        m = self.modem
        m.poll()
        if self.state != UP:
            return False  # an event in poll() took the link down
        now = self.ticks()
        if self._delay and ticks_diff(now, self._up_since) >= self.stable_ms:
            self._delay = 0  # stable: the next failure starts the backoff from the bottom
        if self._later:
            return True
        if self._inflight:
            if m.pubacks != self._pubacks or ticks_diff(now, self._ack_due) >= 0:
                return True
        elif len(self.outbox):
            return True
        return ticks_diff(now, self._last_rx) >= self.status_ms

    def _up_g(self):
        m = self.modem
        while self._later and self.state == UP:  # what handlers asked for inside a command
            topic, arg = self._later.pop(0)
            if isinstance(arg, int):
                yield from m.mqtt_subscribe_g(topic, arg)
            else:
                yield from m.mqtt_publish_g(topic, arg, 0, checked=True)  # by publish_g
                self.counters["qos0_sent"] += 1
        if self._inflight or len(self.outbox):
            yield from self._flush_g()
        if self.state == UP and ticks_diff(self.ticks(), self._last_rx) >= self.status_ms:
            self.counters["status_checks"] += 1
            status = yield from m.mqtt_status_g()  # the module keeps the session alive; ask it
            if status != 1:
                raise ModemError("MQTT status %d: session lost" % status, "link")
            self._last_rx = self.ticks()

    def _flush_g(self):
        """Send queued QoS 1 messages in order until the outbox is empty or flush_ms is
        spent; each leaves the outbox only after its PUBACK. The PUBACK is not waited for
        inside a command: the publish ends at OK and its PUBACK comes as a URC, taken in by
        the next steps, so downlinks keep being delivered meanwhile."""
        m = self.modem
        start = self.ticks()
        while self.state == UP:
            now = self.ticks()
            if self._inflight:
                if m.pubacks == self._pubacks:
                    if ticks_diff(now, self._ack_due) >= 0:
                        raise ModemError("no PUBACK within %d ms: session lost" % ACK_MS, "link")
                    break  # not yet: the next step looks again
                self._inflight = False
                self.outbox.pop()  # only after PUBACK
                self.counters["acked"] += 1
                self._left_box(True)
                self._last_rx = now
                if ticks_diff(now, start) >= self.flush_ms:
                    break
            head = self.outbox.peek()
            if head is None or m.receiving():  # a burst coming in: send when it is over
                break
            topic, payload = head
            self.counters["sent"] += 1
            self._inflight = True
            self._pubacks = m.pubacks
            try:
                yield from m.mqtt_publish_g(topic, payload, 1, False)
            except ValueError as e:  # never sendable: do not block the queue behind it
                self._inflight = False
                self.outbox.pop()
                self.counters["rejected"] += 1
                self._left_box(False)
                log.error(_TAG, "dropped a queued message for %s: %s", topic, e)
                continue
            self._ack_due = ticks_add(self.ticks(), ACK_MS)
            m.poll()  # a PUBACK that came with the OK

    def _left_box(self, acked):
        """The outbox's head left it (every removal comes here, in order)."""
        self.left += 1
        if self.on_left:
            self.on_left(self.left, acked)

    # ------------------------------------------------------------------ failures
    def _goto(self, state):
        if state != self.state:
            log.info(_TAG, "%s -> %s", self.state, state)
            self._leave(self.state)
            self.state = state
            self._enter(state)

    def _leave(self, state):
        """The exit action of a phase."""
        if state == UP:
            self._down_since = self.ticks()
            self.counters["reconnects"] += 1
            if self._inflight:  # its PUBACK never came: the message stays at the head
                self._inflight = False
                self.counters["unacked"] += 1
            for _, arg in self._later:  # subscriptions are made again on connect
                if not isinstance(arg, int):
                    self.counters["qos0_dropped"] += 1
            self._later = []

    def _enter(self, state):
        """The entry action of a phase."""
        if state == ATTACH:
            self._attach_deadline = ticks_add(self.ticks(), self.attach_ms)
        elif state == UP:
            now = self.ticks()
            outage = ticks_diff(now, self._down_since)
            if self._ever_up:
                self.counters["recoveries"] += 1
                self.recovery_ms.append(outage)
                if len(self.recovery_ms) > _RECOVERY_KEEP:
                    self.recovery_ms.pop(0)
            self._ever_up = True
            self._no_answer = 0
            self._flighted = False
            self._token_fresh = False
            self._last_rx = now
            self._up_since = now
            log.info(_TAG, "up (after %d ms); %d queued message(s) to send", outage, len(self.outbox))
            if self.on_up:
                try:
                    self.on_up()
                except Exception as e:  # the app's handler: not a reason to drop the link
                    log.error(_TAG, "on_up failed: %s", log.err(e))

    def _count(self, kind):
        f = self.counters["faults"]
        f[kind] = f.get(kind, 0) + 1

    def _backoff(self):
        """The next growing backoff, with jitter in [3/4 d, d]."""
        self._delay = min(self.backoff_max, max(self.backoff_min, self._delay * 2))
        return self._jitter(self._delay)

    def _jitter(self, d):
        return d - self.rand(30) % (d // 4 + 1)

    def _fail(self, e):
        run(self._fail_g(e), self._wait)

    def _fail_g(self, e):
        """Pick the phase that repairs `e` and when to try it (flight mode, a reset)."""
        kind, state, delay = self._classify(e)
        self._count(kind)
        self._dirty = True
        if kind == "refused" and self.cfg.get("auth") == "http":
            stale = self._token is not None and not self._token_fresh
            self._token = None  # the next try fetches a new token
            state = AUTH
            if stale:  # an expired/revoked token: a new one before blaming the triple
                kind, delay = "token", self._jitter(self.backoff_min)
                log.warn(_TAG, "token refused: fetching a new one")
        if delay is None:
            delay = self._backoff()
        log.warn(_TAG, "%s in %s: %s; retry %s in %d ms", kind, self.state, e if isinstance(e, ModemError) else log.err(e), state, delay)
        if kind == "bug":  # say where: a bug is not a link fault
            show = getattr(sys, "print_exception", None)  # MicroPython
            if show:
                show(e)
            else:
                log.error(_TAG, "bug: %s", log.err(e))
        if kind in ("refused", "auth", "version"):
            log.error(_TAG, "check the device triple (ProductKey, DeviceName, DeviceSecret), "
                            "the sign method and the module firmware; retrying slowly")
        if kind == "memory":
            gc.collect()  # what the failed step held is garbage now
        if kind == "timeout":
            now = self.ticks()
            if not self._no_answer:
                self._silent_since = now
            self._no_answer += 1
            if self.reset and ticks_diff(now, self._silent_since) >= self.silent_ms:
                log.warn(_TAG, "module silent for %d s (%d tries): resetting it",
                         ticks_diff(now, self._silent_since) // 1000, self._no_answer)
                self._no_answer = 0
                yield from self._reset_module_g(True)
        elif kind == "attach":
            if not self._flighted:  # flight mode first: the network often takes it back
                self._flighted = True
                state = ATTACH
                yield from self._flight_mode_g()
                self._attach_deadline = ticks_add(self.ticks(), self.attach_ms)
            else:
                self._flighted = False
                yield from self._reset_module_g()
        self._goto(state)
        self._next = ticks_add(self.ticks(), delay)

    def _flight_mode_g(self):
        self.counters["flight_mode"] += 1
        try:
            yield from self.modem.at.cmd_g("AT+CFUN=4", timeout=10000)
            yield from self.modem.sleep_g(_FLIGHT_MS)  # the vendor's pause in flight mode
            yield from self.modem.at.cmd_g("AT+CFUN=1", timeout=10000)
        except Exception as e:  # a module that cannot even do this gets the reset next time
            log.error(_TAG, "flight mode failed: %s", log.err(e))

    def _reset_module_g(self, pin_only=False):
        self.counters["resets"] += 1
        try:
            if self.reset:
                self.reset()
            elif not pin_only:
                yield from self.modem.at.cmd_g("AT+CFUN=1,1")  # software restart: RDY follows
        except Exception as e:
            log.error(_TAG, "reset failed: %s", log.err(e))

    def _classify(self, e):
        """The recovery table: (fault kind, phase to resume from, delay or None for the
        growing backoff)."""
        if not isinstance(e, ModemError):
            if isinstance(e, OSError):
                return "uart", MODULE, None
            if isinstance(e, MemoryError):  # the heap ran short mid-step: not a bug in the code
                return "memory", MODULE, None
            return "bug", MODULE, None
        kind = e.kind
        if kind == "refused":
            return kind, MQTT, self._jitter(self.backoff_refused)
        if kind == "cloud":
            if getattr(e, "code", None) in _REFUSED_CODES:
                return "auth", AUTH, self._jitter(self.backoff_refused)
            return "auth_error", AUTH, None
        if kind == "version":
            return kind, MODULE, self._jitter(self.backoff_refused)
        if kind in ("sim", "timeout", "attach"):  # lost, muted or restarted: start over
            return kind, MODULE, None
        if kind == "aborted":
            line = getattr(e, "line", "")
            lost = line.startswith("RDY") or line.startswith("+CPIN")
            return kind, MODULE if lost else ATTACH, None
        if kind == "link":
            return kind, self._after_link_loss(), None
        if kind == "connect":  # no bearer, DNS, TLS, HTTP 6xx: re-attach, reopen it
            return kind, ATTACH, None
        # "error" (an unexpected ERROR, e.g. 767 after a lost session), "modem" and the rest
        return kind, MODULE if self.state == MODULE else ATTACH, None

    def _after_link_loss(self):
        if self.state in (MODULE, ATTACH):
            return self.state
        return MQTT if self.modem.bearer_up else ATTACH

    def _on_event(self, name, detail):
        if name == "sim_ready":  # not a fault: a SIM put back in ends the wait at once
            if self.state == MODULE:
                self._next = self.ticks()
            return
        self._count(name)
        self._dirty = True
        if name == "closed":
            target = MQTT
        elif name == "pdp_deact":
            target = ATTACH
        else:  # reboot, sim_removed
            target = MODULE
        if _ORDER.index(target) < _ORDER.index(self.state):
            was_up = self.state == UP
            self._goto(target)
            now = self.ticks()
            if was_up and self._delay == 0:
                self._next = now  # a link that was stable: repair at once
            else:
                self._next = ticks_add(now, self._backoff())

    def _on_message(self, topic, payload):
        self.counters["downlinks"] += 1
        self._last_rx = self.ticks()
        if self.on_message:
            self.on_message(topic, payload)


def _json(obj):
    import json

    return json.dumps(obj)

