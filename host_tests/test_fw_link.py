# The link supervisor (firmware/link.py), driven deterministically: a fake modem that
# implements the driver methods Link uses and raises the driver's real exception classes,
# a fake clock (link.ticks / link.time) and fixed jitter (link.rand); the real Air72x over
# StubUART where the bytes matter (URCs in the middle of a publish, garbage, MQTTSTATU,
# the watchdog feed while waiting). Runs under CPython and MicroPython.
import json
import sys

from fwtest import StubUART, capture_log, generators, raises

from firmware import aliyun, log
from firmware.air72x import Air72x
from firmware.link import ATTACH, AUTH, MODULE, MQTT, UP, Link
from firmware.port import run
from firmware.errors import ATAbort, ATTimeout, ModemError

PK, DN = "a1DemoPk001", "demo-device-1"
TOKEN_REPLY = {"code": 200, "data": {"iotId": "iot-1", "iotToken": "tok-1", "resources": {"mqtt": {"host": "h.example", "port": 1883}}}}


class FakeAT:
    def __init__(self):
        self.idle = None
        self.sent = []

    def cmd(self, command, **kw):
        self.sent.append(command)
        return []


class FakeModem:
    """The driver surface Link uses. fail[name] = [exception or None, ...]: one item is
    taken per call (None: succeed)."""

    def __init__(self):
        self.at = FakeAT()
        self.calls = []
        self.fail = {}
        self.events = []
        self.inbox = []
        self.on_message = None
        self.on_event = None
        self.version = "AirM2M_Air724UG_V409_LTE_AT"
        self.bearer_up = False
        self.attach = True
        self.status = 1
        self.published = []
        self.tokens = 0
        self.stats = {"downlinks_dropped": 0}
        self.pubacks = 0
        self.puback = True  # False: the PUBACKs never come

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        q = self.fail.get(name)
        if q:
            e = q.pop(0)
            if e is not None:
                raise e

    def names(self):
        return [c[0] for c in self.calls]

    check_publish = Air72x.check_publish  # the real door: what the app hands in is checked
    family = Air72x.family  # from the version string, as the driver does
    ca_loaded = None

    def ready(self, tries=20, flow=False):  # as Air72x.ready, through the fake's own steps
        self.autobaud(tries)
        self.at.cmd("ATE0")
        self.check_version()
        self.check_sim()
        return self.signal()[0]

    def autobaud(self, tries=20):
        self._call("autobaud")

    def check_version(self):
        self._call("check_version")

    def check_sim(self):
        self._call("check_sim")

    def signal(self):
        self._call("signal")
        return 20, 99

    def attached(self):
        self._call("attached")
        return self.attach

    def bearer_open(self, apn):
        self._call("bearer_open", apn)
        self.bearer_up = True

    def http_post(self, url, body, content_type=None):
        self._call("http_post", url)
        self.tokens += 1
        reply = dict(TOKEN_REPLY)
        reply["data"] = dict(TOKEN_REPLY["data"], iotToken="tok-%d" % self.tokens)
        return 200, json.dumps(reply).encode()

    def mqtt_connect(self, cid, user, password, host, port, tls=True, keepalive=300):
        self._call("mqtt_connect", user, password, host)

    def mqtt_subscribe(self, topic, qos=0):
        self._call("mqtt_subscribe", topic)

    def mqtt_publish(self, topic, payload, qos=0, wait=True, checked=False):
        self._call("mqtt_publish", payload)
        self.checked = checked
        self.published.append(payload)
        if qos and not wait and self.puback:
            self.pubacks += 1  # its PUBACK URC, taken in by the next poll

    def receiving(self):
        return False

    def sleep(self, ms):
        self._call("sleep", ms)

    def busy(self):
        return False

    def mqtt_status(self):
        self._call("mqtt_status")
        return self.status

    def mqtt_disconnect(self):
        self._call("mqtt_disconnect")

    def poll(self):
        self.deliver()

    def deliver(self):
        while self.events:
            name, detail = self.events.pop(0)
            self.on_event(name, detail)
        while self.inbox:
            t, p = self.inbox.pop(0)
            self.on_message(t, p)


generators(FakeAT, "cmd")
generators(FakeModem, "ready", "attached", "bearer_open", "http_post", "mqtt_connect", "mqtt_subscribe",
           "mqtt_publish", "mqtt_status", "mqtt_disconnect", "sleep")


class Clock:
    def __init__(self):
        self.ms = 1000
        self.s = 1700000000

    def ticks(self):
        return self.ms


def cfg(**kw):
    c = {
        "product_key": PK, "device_name": DN, "device_secret": "DemoDeviceSecret0000000000000001",
        "region": "cn-shanghai", "auth": "mqtt", "sign_method": "hmacsha256", "client_id": None,
        "tls": True, "keepalive": 60, "apn": "CMIIOT", "mqtt_host": None, "mqtt_port": 1883,
        "auth_host": None, "outbox": 20, "outbox_policy": "drop_oldest",
        "backoff_min_ms": 1000, "backoff_max_ms": 16000, "backoff_refused_ms": 600000,
    }
    c.update(kw)
    return c


def make(jitter=0, reset=None, feed=None, modem=None, **kw):
    m = modem or FakeModem()
    clock = Clock()
    link = Link(m, cfg(**kw), aliyun.Topics(PK, DN), reset=reset, feed=feed)
    link.ticks = clock.ticks
    link.time = lambda: clock.s
    link.rand = lambda bits: jitter
    for name in ("_next", "_down_since", "_last_rx", "_up_since", "_attach_deadline"):
        setattr(link, name, clock.ms)
    return link, m, clock


def run_until(link, clock, state, steps=50, dt=0):
    """step() (jumping the clock to the next retry when waiting) until `state`."""
    for _ in range(steps):
        if link.state == state:
            return
        if link.state != UP and link._next - clock.ms > 0:
            clock.ms = link._next
        clock.ms += dt
        link.step()
    assert link.state == state, "stuck in %s, wanted %s" % (link.state, state)


def up(link, clock):
    run_until(link, clock, UP)


def delay(link, clock):
    return link._next - clock.ms


# ---------------------------------------------------------------------------- bring-up
def test_bring_up_runs_every_phase_in_order():
    link, m, clock = make()
    up(link, clock)
    # the first connect of a run closes whatever the module holds (the board may have been
    # reset while the module kept the last run's session, with the old identity)
    assert m.names() == ["autobaud", "check_version", "check_sim", "signal", "attached", "bearer_open",
                         "mqtt_disconnect", "mqtt_connect", "mqtt_subscribe"]
    assert m.at.sent == ["ATE0"]
    assert ("mqtt_subscribe", "/%s/%s/user/get" % (PK, DN)) in m.calls
    assert link.stats()["state"] == UP and link.stats()["recoveries"] == 0


def test_a_changed_identity_closes_the_module_session_first_and_a_clean_one_does_not():
    link, m, clock = make()
    up(link, clock)
    assert m.names().count("mqtt_disconnect") == 1
    m.calls[:] = []
    link._goto(MQTT)  # reconnect with the same identity after a clean close: nothing to close
    run(link._connect_g(), link._wait)
    assert m.names() == ["mqtt_connect", "mqtt_subscribe"]
    m.calls[:] = []
    link.cfg["device_name"] = "other-device"  # new credentials (e.g. after registration)
    link._goto(MQTT)
    run(link._connect_g(), link._wait)
    assert m.names() == ["mqtt_disconnect", "mqtt_connect", "mqtt_subscribe"]


def test_attach_is_polled_then_times_out_into_a_module_restart():
    link, m, clock = make()
    m.attach = False
    run_until(link, clock, ATTACH)
    for _ in range(5):
        link.step()
        clock.ms = link._next
    assert link.state == ATTACH and m.names().count("attached") >= 5
    clock.ms += link.attach_ms
    link.step()  # no attach in 2 minutes: flight mode first (the vendor's guidance), attach again
    assert link.state == ATTACH and link.counters["flight_mode"] == 1
    assert m.at.sent[-2:] == ["AT+CFUN=4", "AT+CFUN=1"] and "AT+CFUN=1,1" not in m.at.sent
    clock.ms = link._next
    link.step()
    assert link.state == ATTACH  # the deadline started again
    clock.ms += link.attach_ms
    link.step()  # still nothing: now the full restart
    assert link.state == MODULE
    assert link.counters["faults"]["attach"] == 2 and link.counters["resets"] == 1
    assert m.at.sent[-1] == "AT+CFUN=1,1"  # no reset pin: a software restart
    m.attach = True
    up(link, clock)


# ---------------------------------------------------------------------------- each fault
def test_closed_event_reconnects_and_resubscribes_everything():
    link, m, clock = make()
    up(link, clock)
    link.subscribe("/%s/%s/user/extra" % (PK, DN), 1)
    m.calls = []
    m.events.append(("closed", "CLOSED"))
    m.fail["mqtt_connect"] = [ModemError("CONNECT FAIL", "connect")]  # hold it in the mqtt phase
    link.step()  # the event is handled first; a stable link is repaired at once
    assert link.state == ATTACH
    m.calls = []
    up(link, clock)
    assert m.names() == ["attached", "bearer_open", "mqtt_disconnect", "mqtt_connect", "mqtt_subscribe", "mqtt_subscribe"]
    subs = [c[1] for c in m.calls if c[0] == "mqtt_subscribe"]
    assert subs == ["/%s/%s/user/get" % (PK, DN), "/%s/%s/user/extra" % (PK, DN)]
    s = link.stats()
    assert s["faults"]["closed"] == 1 and s["reconnects"] == 1 and s["recoveries"] == 1


def test_pdp_loss_reattaches_and_reopens_the_bearer():
    link, m, clock = make()
    up(link, clock)
    m.calls = []
    m.bearer_up = False
    m.events.append(("pdp_deact", "+PDP: DEACT"))
    m.events.append(("closed", "CLOSED"))  # the module reports both: the earlier phase wins
    m.attach = False
    link.step()
    assert link.state == ATTACH
    clock.ms = link._next
    m.attach = True
    up(link, clock)
    assert m.names()[:4] == ["attached", "attached", "bearer_open", "mqtt_disconnect"]


def test_reboot_and_sim_removed_start_from_the_module():
    for name in ("reboot", "sim_removed"):
        link, m, clock = make()
        up(link, clock)
        m.calls = []
        m.events.append((name, "x"))
        m.fail["check_sim"] = [ModemError("no SIM card (+CME ERROR: 10)", "sim")] * 2
        link.step()
        assert link.state == MODULE, name
        up(link, clock)
        assert m.names()[0] == "autobaud"
        assert link.counters["faults"][name] == 1
        assert link.counters["faults"]["sim"] == 2


def test_sim_put_back_ends_the_backoff_at_once():
    link, m, clock = make()
    up(link, clock)
    m.events.append(("sim_removed", "+CPIN: SIM REMOVED"))
    m.fail["check_sim"] = [ModemError("no SIM card (+CME ERROR: 10)", "sim")] * 4
    for _ in range(4):  # the backoff grows while the SIM is out
        clock.ms = link._next
        link.step()
    assert link.state == MODULE and delay(link, clock) > 1000
    m.events.append(("sim_ready", "+CPIN: READY"))
    link.step()
    assert delay(link, clock) <= 0 and "sim_ready" not in link.counters["faults"]
    link.step()  # the module phase runs now, not after the backoff
    assert link.state != MODULE and m.names()[-1] != "check_sim"


def test_each_error_leads_to_its_phase():
    cases = [
        (ModemError("AT+MPUB: link lost (CLOSED)", "link"), True, "link", MQTT),
        (ModemError("AT+MPUB: link lost (+PDP: DEACT)", "link"), False, "link", ATTACH),
        (ATTimeout("AT+MPUB", 15000), True, "timeout", MODULE),
        (ATAbort("AT+MPUB", "RDY"), True, "aborted", MODULE),
        (ATAbort("AT+MPUB", "+CPIN: SIM REMOVED"), True, "aborted", MODULE),
        (ModemError("CONNECT FAIL", "connect"), True, "connect", ATTACH),
        (ModemError("network error", "connect"), True, "connect", ATTACH),
        (ModemError("MPUB sent while x in flight"), True, "modem", ATTACH),
        (OSError(5), True, "uart", MODULE),
        (MemoryError("memory allocation failed, allocating 171 bytes"), True, "memory", MODULE),
    ]
    for exc, bearer, kind, phase in cases:
        link, m, clock = make()
        up(link, clock)
        link.publish("/%s/%s/user/update" % (PK, DN), "x", 1)
        m.bearer_up = bearer
        m.fail["mqtt_publish"] = [exc]
        link.step()  # never raises
        assert link.state == phase, (exc, link.state)
        assert link.counters["faults"] == {kind: 1}, (exc, link.counters["faults"])
        assert len(link.outbox) == 1 and link.counters["unacked"] == 1
        up(link, clock)
        link.step()
        assert link.outbox.peek() is None and m.published == ["x"]


def test_an_unexpected_bug_is_contained():
    link, m, clock = make()
    up(link, clock)
    m.fail["mqtt_status"] = [TypeError("a bug")]
    clock.ms += link.status_ms
    print("(a Traceback below is expected)")
    link.step()
    assert link.state == MODULE and link.counters["faults"] == {"bug": 1}
    up(link, clock)


# ---------------------------------------------------------------------------- backoff
def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    for jitter, low in ((0, False), (1 << 29, True), (12345, None)):
        link, m, clock = make(jitter=jitter)
        m.fail["mqtt_connect"] = [ModemError("CONNECT FAIL", "connect")] * 8
        seen = []
        for _ in range(8):
            run_until(link, clock, MQTT)
            link.step()
            assert link.state == ATTACH
            seen.append(delay(link, clock))
            clock.ms = link._next
        want = [1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000]
        for d, w in zip(seen, want):
            assert w - w // 4 <= d <= w, (seen, want)  # jitter in [3/4 d, d], never over the cap
            if low is False:
                assert d == w, (seen, want)  # no jitter: the doubling itself
            elif low:
                assert d < w, (seen, want)  # a large draw pulls every delay below its step
        up(link, clock)


def test_backoff_restarts_only_after_a_stable_link():
    link, m, clock = make()
    m.fail["mqtt_connect"] = [ModemError("x", "connect")] * 3
    up(link, clock)
    assert link._delay == 4000
    m.events.append(("closed", "CLOSED"))  # dropped right after connecting: keep backing off
    link.step()
    assert link.state == MQTT and delay(link, clock) == 8000
    up(link, clock)
    clock.ms += link.stable_ms
    link.step()
    assert link._delay == 0
    n = m.names().count("mqtt_connect")
    m.events.append(("closed", "CLOSED"))  # a stable link: repaired at once, in this step
    link.step()
    assert link.state == UP and m.names().count("mqtt_connect") == n + 1


# ---------------------------------------------------------------------------- credentials
def test_refused_credentials_back_off_long_and_say_check_the_triple():
    cap = capture_log()
    try:
        link, m, clock = make()
        m.fail["mqtt_connect"] = [ModemError("CONNACK not accepted", "refused")]
        link.rand = lambda bits: 1 << 29
        run_until(link, clock, MQTT)
        link.step()
        assert link.state == MQTT
        d = delay(link, clock)
        assert 450000 <= d <= 600000, d
        text = cap.text()
        assert "refused in mqtt" in text and "check the device triple" in text and "retrying slowly" in text
        clock.ms += d - 1
        link.step()
        assert m.names().count("mqtt_connect") == 1  # not hammered
        up(link, clock)
    finally:
        log.sink = None


def test_http_flow_reuses_the_token_and_refreshes_it_before_7_days():
    link, m, clock = make(auth="http", sign_method="hmacmd5")
    up(link, clock)
    assert m.tokens == 1 and link.counters["tokens"] == 1
    # the auth code is dropped once the token is in: the MQTT phase runs without it
    assert "firmware.auth" not in sys.modules and "firmware.http" not in sys.modules
    assert ("mqtt_connect", "iot-1", "tok-1", "h.example") in m.calls
    for _ in range(3):  # reconnects within the token's life: no new token
        m.events.append(("closed", "CLOSED"))
        link.step()
        up(link, clock)
    assert m.tokens == 1
    clock.s += 6 * 86400 + 1  # a day before the 7-day expiry
    m.events.append(("closed", "CLOSED"))
    link.step()
    up(link, clock)
    assert m.tokens == 2
    assert ("mqtt_connect", "iot-1", "tok-2", "h.example") in m.calls


def test_http_flow_refused_old_token_is_replaced_at_once_but_a_fresh_one_backs_off():
    cap = capture_log()
    try:
        link, m, clock = make(auth="http", sign_method="hmacmd5")
        up(link, clock)
        m.events.append(("closed", "CLOSED"))
        m.fail["mqtt_connect"] = [ModemError("CONNACK 3", "refused"), ModemError("CONNACK 4", "refused")]
        link.step()  # reconnects at once and is refused with the old token: a new one, soon
        assert link.state == AUTH and delay(link, clock) <= 1000
        assert "token refused: fetching a new one" in cap.text()
        assert "check the device triple" not in cap.text()
        clock.ms = link._next
        link.step()
        assert m.tokens == 2 and link.state == MQTT
        link.step()  # refused again with a fresh token: the triple is wrong
        assert link.state == AUTH and delay(link, clock) >= 450000
        assert "check the device triple" in cap.text()
        up(link, clock)
        assert m.tokens == 3
    finally:
        log.sink = None


def test_http_auth_errors():
    cap = capture_log()
    try:
        link, m, clock = make(auth="http", sign_method="hmacmd5")
        run_until(link, clock, AUTH)
        real = m.http_post
        answers = [(200, b'{"code":401,"message":"bad sign"}'), (500, b"oops")]

        def post(url, body, content_type=None):
            if answers:
                m.calls.append(("http_post", url))
                return answers.pop(0)
            return real(url, body)

        m.http_post = post
        link.step()
        assert link.state == AUTH and delay(link, clock) >= 450000
        assert link.counters["faults"] == {"auth": 1} and "check the device triple" in cap.text()
        clock.ms = link._next
        link.step()  # unreadable reply: an ordinary backoff
        assert link.state == AUTH and delay(link, clock) <= 2000
        assert link.counters["faults"]["auth_error"] == 1
        up(link, clock)
    finally:
        log.sink = None


# ---------------------------------------------------------------------------- outbox
def test_messages_queued_while_down_go_out_in_order_after_connecting():
    link, m, clock = make()
    t = "/%s/%s/user/update" % (PK, DN)
    for i in range(5):
        assert link.publish(t, "m%d" % i, 1)  # down: queued, publish never blocks
    assert m.published == [] and len(link.outbox) == 5
    up(link, clock)
    link.step()
    assert m.published == ["m0", "m1", "m2", "m3", "m4"]
    assert len(link.outbox) == 0
    s = link.stats()
    assert s["queued"] == 5 and s["sent"] == 5 and s["acked"] == 5 and s["unacked"] == 0


def test_a_message_leaves_the_outbox_only_after_its_puback():
    link, m, clock = make()
    t = "/%s/%s/user/update" % (PK, DN)
    up(link, clock)
    for i in range(3):
        link.publish(t, "m%d" % i, 1)
    m.bearer_up = True
    m.fail["mqtt_publish"] = [None, ATTimeout("AT+MPUB", 15000, "PUBACK")]
    link.step()
    assert m.published == ["m0"]  # m1 got no PUBACK
    assert [x[1] for x in link.outbox._q] == ["m1", "m2"]
    assert link.counters["unacked"] == 1 and link.counters["acked"] == 1
    link.publish(t, "m3", 1)
    up(link, clock)
    link.step()
    assert m.published == ["m0", "m1", "m2", "m3"]  # m1 again first, nothing lost, in order
    assert link.counters["sent"] == 5 and link.counters["acked"] == 4


def test_outbox_policies_and_drop_counting_through_link():
    log.sink = lambda line: None
    try:
        t = "/%s/%s/user/update" % (PK, DN)
        link, m, clock = make(outbox=3, outbox_policy="drop_oldest")
        for i in range(5):
            assert link.publish(t, "m%d" % i, 1)
        assert link.stats()["dropped"] == 2
        up(link, clock)
        link.step()
        assert m.published == ["m2", "m3", "m4"]
        link, m, clock = make(outbox=3, outbox_policy="refuse_new")
        assert [link.publish(t, "m%d" % i, 1) for i in range(5)] == [True, True, True, False, False]
        assert link.stats()["dropped"] == 2 and link.stats()["queued"] == 3
        up(link, clock)
        link.step()
        assert m.published == ["m0", "m1", "m2"]
    finally:
        log.sink = None


def test_unsendable_message_does_not_block_the_queue():
    log.sink = lambda line: None
    try:
        link, m, clock = make()
        t = "/%s/%s/user/update" % (PK, DN)
        up(link, clock)
        link.publish(t, "bad", 1)
        link.publish(t, "good", 1)
        m.fail["mqtt_publish"] = [ValueError("payload: too long")]
        link.step()
        assert m.published == ["good"] and link.counters["rejected"] == 1 and link.state == UP
    finally:
        log.sink = None


def test_qos0_publish_is_checked_once():
    # Link.publish checks at the door and tells the driver so: check_publish costs ~2 ms on a Pico
    link, m, clock = make()
    up(link, clock)
    n = [0]

    def check(topic, payload, qos=0):
        n[0] += 1
        return Air72x.check_publish(m, topic, payload, qos)

    m.check_publish = check
    assert link.publish("/%s/%s/user/update" % (PK, DN), bytearray(b"y"), 0) is True
    assert n[0] == 1 and m.checked is True and m.published[-1] == b"y"
    assert raises(ValueError, link.publish, "/%s/%s/user/up\"date" % (PK, DN), "y", 0)
    assert n[0] == 2 and m.published[-1] == b"y"


def test_qos0_while_down_is_counted_not_queued():
    log.sink = lambda line: None
    try:
        link, m, clock = make()
        assert link.publish("/%s/%s/user/update" % (PK, DN), "x", 0) is False
        assert link.counters["qos0_dropped"] == 1 and len(link.outbox) == 0
        up(link, clock)
        assert link.publish("/%s/%s/user/update" % (PK, DN), "y", 0) is True
        assert link.counters["qos0_sent"] == 1
    finally:
        log.sink = None


# ---------------------------------------------------------------------------- dead link, reset
def test_dead_session_is_found_with_mqttstatu():
    link, m, clock = make()
    up(link, clock)
    assert link.status_ms == 30000 and link.dead_after_ms == 90000  # keepalive 60 s
    link.step()
    assert "mqtt_status" not in m.names()  # traffic is recent: no probe
    clock.ms += link.status_ms
    link.step()
    assert m.names().count("mqtt_status") == 1 and link.state == UP  # 1: alive
    m.inbox.append(("/%s/%s/user/get" % (PK, DN), b"hi"))
    clock.ms += link.status_ms - 1
    link.step()  # a downlink counts as traffic: no probe yet
    assert m.names().count("mqtt_status") == 1 and link.counters["downlinks"] == 1
    m.status = 2  # TCP up, no MQTT session
    m.bearer_up = True
    clock.ms += link.status_ms
    link.step()
    assert link.state == MQTT and link.counters["faults"] == {"link": 1}
    m.status = 1
    up(link, clock)
    assert "mqtt_disconnect" in m.names()  # the stale session is closed first


def test_reset_is_pulsed_after_repeated_timeouts():
    pulses = []
    log.sink = lambda line: None
    try:
        link, m, clock = make(reset=lambda: pulses.append(clock.ms))
        up(link, clock)
        m.fail["mqtt_publish"] = [ATTimeout("AT+MPUB", 15000)]
        m.fail["autobaud"] = [ModemError("module does not answer AT (20 tries)", "timeout")] * 15
        link.publish("/%s/%s/user/update" % (PK, DN), "x", 1)
        link.step()
        first = clock.ms
        assert link.state == MODULE and pulses == []
        for _ in range(14):  # no OK for 90 s (the vendor's guidance): the reset pin
            clock.ms = max(link._next, clock.ms + 10000)
            link.step()
            if pulses:
                break
        assert 90000 <= clock.ms - first < 90000 + 20000
        assert link.counters["resets"] == 1
        tries = link.counters["faults"]["timeout"]
        assert tries >= 3
        m.fail["autobaud"] = []  # the reset brought it back
        up(link, clock)
        link.step()
        assert len(pulses) == 1  # once up, the silence starts again from zero
        assert m.published == ["x"]
    finally:
        log.sink = None


def test_no_reset_pin_no_pulse_but_still_recovers():
    link, m, clock = make()
    up(link, clock)
    m.fail["autobaud"] = [ModemError("no answer", "timeout")] * 5
    m.events.append(("reboot", "RDY"))
    log.sink = lambda line: None
    try:
        link.step()
        up(link, clock)
    finally:
        log.sink = None
    assert link.counters["resets"] == 0 and link.counters["faults"]["timeout"] == 5


# ---------------------------------------------------------------------------- real driver bytes
def _real(script, feed=None):
    uart = StubUART(script)
    modem = Air72x(uart)
    link, _, clock = make(modem=modem, feed=feed)
    link.state = UP  # as if connected: the driver's session flags match
    modem.mqtt_connected = True
    modem.bearer_up = True
    return link, modem, uart, clock


def test_real_driver_pdp_loss_during_a_publish_keeps_the_message():
    pub = b'AT+MPUB="/a1DemoPk001/demo-device-1/user/update",1,0,"{\\22seq\\22: 1}"\r'
    link, modem, uart, clock = _real([(pub, b"\r\nOK\r\n\r\n+PDP: DEACT\r\n\r\nCLOSED\r\n")])
    log.sink = lambda line: None
    try:
        link.publish("/%s/%s/user/update" % (PK, DN), '{"seq": 1}', 1)
        link.step()  # the publish ends at OK; the events that follow take the link down
        assert link.state == ATTACH  # the bearer went with the PDP context
        assert len(link.outbox) == 1 and link.counters["unacked"] == 1  # no PUBACK: kept
        assert link.counters["faults"] == {"pdp_deact": 1, "closed": 1}  # no earlier phase than attach
    finally:
        log.sink = None


def test_real_driver_garbage_around_a_puback_is_survived():
    pub = b'AT+MPUB="/a1DemoPk001/demo-device-1/user/update",1,0,"x"\r'
    link, modem, uart, clock = _real([(pub, [b"\r\nOK\r\n\x00\xff\xfe#junk\x1b", b"\r\n\r\nPUBACK\r\n"])])
    log.sink = lambda line: None
    try:
        link.publish("/%s/%s/user/update" % (PK, DN), "x", 1)
        link.step()
        assert link.state == UP and len(link.outbox) == 0 and link.counters["acked"] == 1
    finally:
        log.sink = None


def test_real_driver_mqttstatu_and_watchdog_feed_while_waiting():
    feeds = []
    script = [
        (b"AT+MQTTSTATU\r", [100, b"\r\n+MQTTSTATU :1\r\n\r\nOK\r\n"]),  # 100 empty reads first
        (b"AT+MQTTSTATU\r", b"\r\n+MQTTSTATU :0\r\n\r\nOK\r\n"),
    ]
    link, modem, uart, clock = _real(script, feed=lambda: feeds.append(1))
    log.sink = lambda line: None
    try:
        clock.ms += link.status_ms
        link.step()
        assert link.state == UP and len(feeds) >= 100  # fed on every wait inside the command
        clock.ms += link.status_ms
        link.step()
        assert link.state == MQTT and link.counters["faults"] == {"link": 1}
        assert uart.done()
    finally:
        log.sink = None


def test_stats_are_readable_and_time_recoveries():
    link, m, clock = make()
    up(link, clock)
    for outage in (1500, 3000, 5000):
        m.events.append(("pdp_deact", "+PDP: DEACT"))
        m.attach = False
        link.step()
        clock.ms += outage
        m.attach = True
        up(link, clock)
    s = link.stats()
    assert s["recoveries"] == 3 and s["reconnects"] == 3
    assert s["recovery_ms_median"] == 3000 and s["recovery_ms_max"] == 5000 and s["recovery_ms_p95"] == 5000
    assert s["faults"] == {"pdp_deact": 3}
    s["faults"]["pdp_deact"] = 99  # a copy: the REPL cannot break the counters
    assert link.stats()["faults"] == {"pdp_deact": 3}
    cap = capture_log()
    try:
        link.log_stats()
    finally:
        log.sink = None
    assert json.loads(cap.lines[0].split("link: stats ", 1)[1])["recoveries"] == 3


def test_config_fields_for_the_supervisor():
    from fwtest import raises

    from firmware import config

    base = {"product_key": PK, "device_name": DN, "device_secret": "s"}
    c = config.check(dict(base))
    assert (c["backoff_min_ms"], c["backoff_max_ms"], c["backoff_refused_ms"]) == (1000, 60000, 600000)
    assert c["status_ms"] == 0 and c["stats_interval"] == 600
    link = Link(FakeModem(), c, aliyun.Topics(PK, DN))
    assert link.backoff_min == 1000 and link.status_ms == 150000 and link.dead_after_ms == 450000
    for bad, field in (({"backoff_min_ms": 0}, "backoff_min_ms"), ({"backoff_min_ms": 500, "backoff_max_ms": 100}, "backoff_max_ms"),
                       ({"status_ms": -1}, "status_ms"), ({"stats_interval": "x"}, "stats_interval")):
        cfg_ = dict(base)
        cfg_.update(bad)
        e = raises(config.ConfigError, config.check, cfg_)
        assert field in str(e), (bad, str(e))
