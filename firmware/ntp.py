# Time from the cloud: Aliyun's NTP over MQTT (no UDP needed through the module).
#
#   subscribe /ext/ntp/{pk}/{dn}/response
#   publish   /ext/ntp/{pk}/{dn}/request  {"deviceSendTime":"<device ms>"}     (QoS 0)
#   reply     {"deviceSendTime":..,"serverRecvTime":..,"serverSendTime":..}  (Unix epoch ms)
#   now = (serverRecvTime + serverSendTime + deviceRecvTime - deviceSendTime) / 2
#
# The device times only need one consistent clock: ticks_ms() (ms since boot), whose
# difference (deviceRecvTime - deviceSendTime, with ticks_diff: it wraps) is the round trip.
# `now` is the real time at the moment the reply arrived. From then on:
#   now_ms()  Unix epoch milliseconds (ticks-based, ms resolution), None before a sync.
#   set_rtc() also sets the board's RTC (UTC) when there is one, so log stamps and
#             time.localtime() are right: ESP32 counts from 2000, rp2 from 1970 (time.gmtime
#             on the board converts in its own epoch). The unix port and CPython have no
#             settable RTC: there only the offset behind now_ms() exists.
# The Ntp class asks on every (re)connect (on_up), then every `interval_s`, and again after
# a lost answer (retry delay doubling from timeout_ms up to the interval).
import time

from firmware import log
from firmware.port import const, ticks_add, ticks_diff, ticks_ms
from firmware.aliyun import parse

_TAG = "ntp"
_REBASE_MS = const(86400000)  # move the base forward daily: ticks_diff is valid for ~6 days
UNIX_2000 = const(946684800)  # seconds from 1970-01-01 to 2000-01-01

_base_ms = None  # Unix epoch ms at _base_ticks (None: never synced)
_base_ticks = 0
clock = ticks_ms  # the device clock (ms, wraps); tests replace it


def synced():
    return _base_ms is not None


def now_ms():
    """Real Unix epoch milliseconds once synced; None before."""
    global _base_ms, _base_ticks
    if _base_ms is None:
        return None
    t = clock()
    d = ticks_diff(t, _base_ticks)
    if d >= _REBASE_MS:
        _base_ms += d
        _base_ticks = t
        d = 0
    return _base_ms + d


def set_time(epoch_ms, at_ticks=None):
    """The real time was `epoch_ms` at ticks `at_ticks` (default now); sets the RTC too."""
    global _base_ms, _base_ticks
    _base_ticks = clock() if at_ticks is None else at_ticks
    _base_ms = epoch_ms
    return set_rtc(now_ms())


def forget():
    """Back to "not synced" (tests)."""
    global _base_ms
    _base_ms = None


def epoch_offset():
    """Seconds to subtract from Unix time to get the board's time.time() (946684800 on
    ESP32, whose epoch is 2000; 0 on rp2, the unix port and CPython)."""
    return UNIX_2000 if time.gmtime(0)[0] == 2000 else 0


def rtc_tuple(epoch_ms, offset=None, gmtime=None):
    """machine.RTC().datetime() tuple for Unix epoch ms (UTC): (year, month, day, weekday
    0=Monday, hours, minutes, seconds, subseconds=0). `offset`: epoch_offset() and
    `gmtime`: time.gmtime (the board's own epoch) by default."""
    secs = epoch_ms // 1000 - (epoch_offset() if offset is None else offset)
    tm = (gmtime or time.gmtime)(secs)
    return (tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0)


def set_rtc(epoch_ms):
    """Set the board's RTC; False where there is none to set (unix port, CPython)."""
    try:
        from machine import RTC  # pyright: ignore[reportAttributeAccessIssue]
    except ImportError:
        return False
    try:
        RTC().datetime(rtc_tuple(epoch_ms))
        return True
    except Exception as e:
        log.warn(_TAG, "RTC not set: %s", log.err(e))
        return False


def iso(epoch_ms):
    tm = time.gmtime(epoch_ms // 1000 - epoch_offset())
    return "%04d-%02d-%02d %02d:%02d:%02d UTC" % (tm[0], tm[1], tm[2], tm[3], tm[4], tm[5])


class Ntp:
    def __init__(self, link, topics, interval_s=3600, timeout_ms=10000):
        self.link = link
        self.topics = topics
        self.interval_ms = int(interval_s * 1000)  # 0: only on connect
        self.timeout_ms = timeout_ms
        self.sets_rtc = None  # after a sync: whether the RTC was set
        self._sent = None  # deviceSendTime (ticks) of the request in flight
        self._due = None  # ticks of the next request (None: none planned)
        self._retry = timeout_ms
        link.subscribe(topics.ntp_response, 0)

    def on_up(self):
        """Call on every (re)connect: ask for the time now."""
        self._retry = self.timeout_ms
        self.request()

    def request(self):
        t = clock()
        self._sent = t
        self._due = ticks_add(t, self._retry)  # ask again if no answer by then
        if not self.link.publish(self.topics.ntp_request, '{"deviceSendTime":"%d"}' % t, 0):
            self._sent = None

    def poll(self):
        if self._due is None or ticks_diff(clock(), self._due) < 0 or not self.link.up:
            return
        if self._sent is not None:
            log.warn(_TAG, "no response in %d ms: asking again", self._retry)
            self._retry = min(self._retry * 2, max(self.interval_ms, self.timeout_ms))
        self.request()

    def handle(self, topic, payload):
        """True when the downlink was an NTP response (then handled: never raises)."""
        if topic != self.topics.ntp_response:
            return False
        recv = clock()
        msg = parse(topic, payload, _TAG)
        if msg is None:
            return True
        try:
            sent = int(msg["deviceSendTime"])
            srv_recv = int(msg["serverRecvTime"])
            srv_send = int(msg["serverSendTime"])
        except (KeyError, ValueError, TypeError):
            log.error(_TAG, "response without deviceSendTime/serverRecvTime/serverSendTime (%d bytes): ignored", len(payload))
            return True
        if self._sent is None or sent != self._sent:
            log.warn(_TAG, "response to another request (deviceSendTime %d): ignored", sent)
            return True
        rtt = ticks_diff(recv, sent)
        now = (srv_recv + srv_send + rtt) // 2  # deviceRecvTime - deviceSendTime = rtt
        self.sets_rtc = set_time(now, recv)
        self._sent = None
        self._retry = self.timeout_ms
        self._due = ticks_add(recv, self.interval_ms) if self.interval_ms else None
        log.info(_TAG, "time set: %s (round trip %d ms, %s)", iso(now), rtt,
                 "RTC set" if self.sets_rtc else "no RTC here: kept as an offset")
        return True
