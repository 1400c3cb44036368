# The link supervisor: a state machine from power-up to connected and back again.
#
#   module -> attach (and open the bearer) -> auth ("http" flow, no valid token) -> mqtt -> up
#
# step() does at most one phase per call and returns, so the app's loop keeps running while
# the link is down; a phase is bounded by its AT deadlines. Every failure leads back to the
# phase that repairs it, after a backoff that grows (with jitter) up to a cap:
#   CLOSED, a dead session, a failed publish     -> mqtt (reconnect, resubscribe all)
#   +PDP: DEACT / PDN DEACT                      -> attach (then bearer/auth as needed)
#   RDY (module reboot), SIM removed, AT timeouts -> module (and a reset pulse when the
#                                                   module stops answering, if wired)
#   refused credentials / auth errors            -> a long backoff and a log line that
#                                                   says to check the triple
# QoS 1 messages go through the outbox and leave it only after their PUBACK.
import random

from firmware import aliyun, log
from firmware.air72x import ConnectError, CredentialsRefused, LinkDown, SimError, VersionError
from firmware.aliyun import CloudError
from firmware.at import ATAbort, ATTimeout, ModemError
from firmware.outbox import Outbox
from firmware.port import const, ticks_add, ticks_diff, ticks_ms, time_s

_TAG = "link"
_ATTACH_MS = const(90000)  # attach must happen within this, else restart the module
_ATTACH_POLL_MS = const(1000)
_FLUSH_BATCH = const(8)  # outbox messages sent per step()
_TIMEOUTS_BEFORE_RESET = const(3)  # consecutive AT timeouts before the module is reset

MODULE = "module"
ATTACH = "attach"
AUTH = "auth"
MQTT = "mqtt"
UP = "up"


class Link:
    def __init__(self, modem, cfg, topics, reset=None, feed=None):
        self.modem = modem
        self.cfg = cfg
        self.topics = topics
        self.reset = reset  # callable that power-cycles / resets the module, or None
        self.feed = feed  # callable that feeds the watchdog, or None
        if feed:
            modem.at.idle = feed
        self.outbox = Outbox(cfg["outbox"], cfg["outbox_policy"])
        self.subscriptions = [(topics.get, 0)]
        self.on_message = None  # handler(topic: str, payload: bytes)
        self.on_up = None  # called after every (re)connect
        self.state = MODULE
        self.backoff_min = 1000
        self.backoff_max = 60000
        self.backoff_refused = 600000  # wrong credentials are not hammered
        self.dead_after_ms = cfg["keepalive"] * 1500  # 1.5 x keepalive without traffic
        self._delay = 0
        self._next = ticks_ms()
        self._attach_deadline = 0
        self._token = None  # (user, password, host, port, issued_s) for the "http" flow
        self._timeouts = 0
        self._dirty = False  # the module may hold a stale MQTT session
        self._last_rx = ticks_ms()
        self._down_since = ticks_ms()
        self.counters = {
            "reconnects": 0,
            "faults": {},
            "sent": 0,
            "acked": 0,
            "dropped": 0,
            "downlinks": 0,
            "resets": 0,
        }
        self.recovery_ms = []  # how long each outage lasted (last 50)
        modem.on_message = self._on_message
        modem.on_event = self._on_event

    # ------------------------------------------------------------------ the app's side
    def step(self):
        """Run one phase (or, when up, poll and flush the outbox). Never raises."""
        if self.feed:
            self.feed()
        try:
            self.modem.deliver()  # events first: they may change the phase
            if self.state == UP:
                self._up()
            elif ticks_diff(ticks_ms(), self._next) >= 0:
                self._phase()
        except Exception as e:  # every failure has a recovery; nothing escapes the loop
            self._fail(e)

    @property
    def up(self):
        return self.state == UP

    def publish(self, topic, payload, qos=0):
        """QoS 1: queued, sent in order, kept until PUBACK; False if the outbox refused it.
        QoS 0: sent now if the link is up; False (counted and logged) if it is not."""
        if qos:
            ok = self.outbox.put(topic, payload)
            self.counters["dropped"] = self.outbox.dropped
            if self.state == UP:
                self.step()
            return ok
        if self.state != UP:
            self.counters["dropped"] += 1
            log.warn(_TAG, "link %s: QoS 0 message for %s not sent", self.state, topic)
            return False
        try:
            self.modem.mqtt_publish(topic, payload, 0)
            self.counters["sent"] += 1
            return True
        except ValueError:
            raise  # the caller's payload is wrong: say so to the caller
        except Exception as e:
            self.counters["dropped"] += 1
            self._fail(e)
            return False

    def subscribe(self, topic, qos=0):
        """Subscribe now (if up) and again after every reconnect."""
        if (topic, qos) not in self.subscriptions:
            self.subscriptions.append((topic, qos))
        if self.state == UP:
            try:
                self.modem.mqtt_subscribe(topic, qos)
            except Exception as e:
                self._fail(e)

    def stats(self):
        s = dict(self.counters)
        s["faults"] = dict(self.counters["faults"])
        s["state"] = self.state
        s["outbox"] = len(self.outbox)
        s["downlinks_dropped"] = self.modem.stats["downlinks_dropped"]
        r = sorted(self.recovery_ms)
        if r:
            s["recovery_ms_median"] = r[len(r) // 2]
            s["recovery_ms_max"] = r[-1]
        return s

    # ------------------------------------------------------------------ phases
    def _phase(self):
        st = self.state
        m = self.modem
        if st == MODULE:
            m.autobaud()
            m.at.cmd("ATE0")
            m.check_version()
            m.check_sim()
            rssi, _ = m.signal()
            log.info(_TAG, "module %s ready, signal %s", m.version, rssi)
            self._attach_deadline = ticks_add(ticks_ms(), _ATTACH_MS)
            self._goto(ATTACH)
        elif st == ATTACH:
            if m.attached():
                m.bearer_open(self.cfg["apn"])  # MIPSTART and HTTP both need it
                self._goto(AUTH if self._needs_token() else MQTT)
            elif ticks_diff(self._attach_deadline, ticks_ms()) <= 0:
                raise ModemError("not attached after %d s: check antenna, SIM data plan, APN" % (_ATTACH_MS // 1000))
            else:
                self._next = ticks_add(ticks_ms(), _ATTACH_POLL_MS)
        elif st == AUTH:
            user, password, host, port = aliyun.http_auth(m, self.cfg)
            self._token = (user, password, host, port, time_s())
            self._goto(MQTT)
        elif st == MQTT:
            self._connect()

    def _needs_token(self):
        if self.cfg["auth"] != "http":
            return False
        t = self._token
        return t is None or time_s() - t[4] > aliyun.TOKEN_LIFE_S - 86400

    def _connect(self):
        m = self.modem
        if self._needs_token():
            self._goto(AUTH)
            return
        if self._dirty:
            m.mqtt_disconnect()  # whatever the module still holds from before
            self._dirty = False
        if self._token:
            user, password, host, port, _ = self._token
            if self.cfg.get("mqtt_host") or not host:
                host, port = aliyun.mqtt_host(self.cfg), self.cfg["mqtt_port"]
            cid = aliyun.client_id(self.cfg)
        else:
            cid, user, password, host, port = aliyun.credentials(m, self.cfg)
        m.mqtt_connect(cid, user, password, host, port, tls=self.cfg["tls"], keepalive=self.cfg["keepalive"])
        for topic, qos in self.subscriptions:
            m.mqtt_subscribe(topic, qos)
        outage = ticks_diff(ticks_ms(), self._down_since)
        self.recovery_ms.append(outage)
        if len(self.recovery_ms) > 50:
            self.recovery_ms.pop(0)
        self._delay = 0
        self._timeouts = 0
        self._last_rx = ticks_ms()
        self._goto(UP)
        log.info(_TAG, "up (after %d ms); %d queued message(s) to send", outage, len(self.outbox))
        if self.on_up:
            self.on_up()

    def _up(self):
        m = self.modem
        m.poll()
        if self.state != UP:
            return  # an event in poll() took the link down
        n = 0
        while n < _FLUSH_BATCH and len(self.outbox) and self.state == UP:
            topic, payload = self.outbox.peek()
            m.mqtt_publish(topic, payload, 1)
            self.outbox.pop()  # only after PUBACK
            self.counters["sent"] += 1
            self.counters["acked"] += 1
            self._last_rx = ticks_ms()
            n += 1
        if ticks_diff(ticks_ms(), self._last_rx) > self.dead_after_ms // 3:
            status = m.mqtt_status()  # the module keeps the session alive; ask it
            self._last_rx = ticks_ms()
            if status != 1:
                raise LinkDown("MQTT status %d: session lost" % status)

    # ------------------------------------------------------------------ failures
    def _goto(self, state):
        if state != self.state:
            log.info(_TAG, "%s -> %s", self.state, state)
            if self.state == UP:
                self._down_since = ticks_ms()
                self.counters["reconnects"] += 1
            self.state = state

    def _count(self, kind):
        f = self.counters["faults"]
        f[kind] = f.get(kind, 0) + 1

    def _fail(self, e):
        """Pick the phase that repairs `e` and when to try it."""
        kind, state, delay = self._classify(e)
        self._count(kind)
        self._dirty = True
        if kind == "refused" and self.cfg["auth"] == "http" and self._token:
            self._token = None  # an expired token: fetch a new one before blaming the triple
            delay = self.backoff_min
        if delay is None:
            self._delay = min(self.backoff_max, max(self.backoff_min, self._delay * 2))
            delay = self._delay
        delay = delay - delay // 4 + random.getrandbits(16) % (delay // 2 + 1)  # +-25% jitter
        log.warn(_TAG, "%s in %s: %s; retry %s in %d ms", kind, self.state, e, state, delay)
        if kind in ("refused", "auth", "version"):
            log.error(_TAG, "check the device triple (ProductKey, DeviceName, DeviceSecret), "
                            "the sign method and the module firmware; retrying slowly")
        if state == MODULE and kind == "timeout" and self.reset and self._timeouts >= _TIMEOUTS_BEFORE_RESET:
            log.warn(_TAG, "module does not answer: resetting it")
            self.counters["resets"] += 1
            self._timeouts = 0
            try:
                self.reset()
            except Exception as re:
                log.error(_TAG, "reset failed: %r", re)
        self._goto(state)
        self._next = ticks_add(ticks_ms(), delay)

    def _classify(self, e):
        """(fault kind, phase to resume from, delay or None for the growing backoff)."""
        if isinstance(e, CredentialsRefused):
            return "refused", MQTT if self._token is None else AUTH, self.backoff_refused
        if isinstance(e, CloudError):
            if e.code in (401, 5001, 6200, 460):
                return "auth", AUTH, self.backoff_refused
            return "auth", ATTACH, None
        if isinstance(e, VersionError):
            return "version", MODULE, self.backoff_refused
        if isinstance(e, SimError):
            return "sim", MODULE, None
        if isinstance(e, ATTimeout):
            self._timeouts += 1
            if self._timeouts >= _TIMEOUTS_BEFORE_RESET or self.state == MODULE:
                return "timeout", MODULE, None
            return "timeout", self._resume_after_link_loss(), None
        if isinstance(e, ATAbort):
            lost = e.line.startswith("RDY") or e.line.startswith("+CPIN")
            return "aborted", MODULE if lost else ATTACH, None
        if isinstance(e, (LinkDown, ConnectError)):
            return "link", self._resume_after_link_loss(), None
        if isinstance(e, ModemError):
            return "modem", MODULE if self.state == MODULE else ATTACH, None
        if isinstance(e, OSError):
            return "uart", MODULE, None
        return "bug", MODULE, None

    def _resume_after_link_loss(self):
        if self.state in (MODULE, ATTACH):
            return self.state
        return MQTT if self.modem.bearer_up or self.cfg["auth"] == "mqtt" else ATTACH

    def _on_event(self, name, detail):
        self._count(name)
        self._dirty = True
        if name == "closed":
            target = MQTT
        elif name == "pdp_deact":
            target = ATTACH
            self._attach_deadline = ticks_add(ticks_ms(), _ATTACH_MS)
        else:  # reboot, sim_removed
            target = MODULE
        order = (MODULE, ATTACH, AUTH, MQTT, UP)
        if order.index(target) < order.index(self.state):
            self._goto(target)
            self._next = ticks_ms()

    def _on_message(self, topic, payload):
        self.counters["downlinks"] += 1
        self._last_rx = ticks_ms()
        if self.on_message:
            self.on_message(topic, payload)
