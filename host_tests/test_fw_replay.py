# Replays serial logs of real Air724UG / Air720UG / Air780E(P) modules, taken from public
# sources (host_tests/captures/, format and sources in its README.md), against the real
# driver over fwtest.StubUART: each host command gets the module's captured reply, output
# that came unprompted is fed as it came. Every replay runs as captured (whole replies),
# one byte per read, seven bytes per read and split at seeded random byte boundaries.
# Runs under CPython (pytest) and MicroPython (mprun), from the repository root.
import os

from fwtest import StubUART, capture_log, raises, release_log

from firmware.air72x import Air72x
from firmware.errors import ATError, ATTimeout, ModemError

DIR = "host_tests/captures"
OK = b"\r\nOK\r\n"
# 0: whole replies; n > 0: at most n bytes per read; n < 0: random sizes 1..23, seed -n
SPLITS = (0, 1, 7, -1, -2, -3)
NO_FINAL_MS = 50  # a reply with no final result (AT+CIFSR's bare address) ends by timeout

# What a module prints on its own at power-up and on the network: handled, never "unknown"
CHATTER = (b"RDY", b"^boot.rom", b"+E_UTRAN Service", b"+NITZ:", b"^MODE:", b"+CGEV: ME PDN ACT",
           b"SMS Ready", b"Call Ready", b"+CTZV:", b"+CREG:", b"+CPIN:")
# URCs the driver has handlers for
HANDLED = (b"+MSUB", b"CLOSED", b"+PDP", b"+CGEV", b"+SAPBR", b"RDY", b"+CPIN", b"SUBACK", b"UNSUBACK",
           b"PUBACK", b"CONNACK", b"CONNECT OK", b"OK", b"+HTTPACTION")
KINDS = ("capture", "documentation")
HEADERS = ("source", "kind", "module", "firmware", "read")


def starts(line, prefixes):
    for p in prefixes:
        if line.startswith(p):
            return True
    return False


def unescape(text):
    """The escapes of a "<= " / ">= " line: \\r \\n \\t \\\\ \\xHH."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == 92:
            e = text[i + 1]
            if e == 120:  # x
                out.append(int(text[i + 2 : i + 4].decode(), 16))
                i += 4
                continue
            out.append({114: 13, 110: 10, 116: 9, 92: 92}[e])
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def then_for(cmd):
    """The line that ends a command after OK, as the driver waits for it."""
    if cmd.startswith(b"AT+MIPSTART") or cmd.startswith(b"AT+SSLMIPSTART"):
        return (b"CONNECT OK", b"ALREADY CONNECT", b"CONNECT FAIL")
    if cmd.startswith(b"AT+MCONNECT"):
        return (b"CONNACK OK",)
    if cmd.startswith(b"AT+MSUB="):
        return (b"SUBACK",)
    if cmd.startswith(b"AT+MUNSUB="):
        return (b"UNSUBACK",)
    if cmd.startswith(b"AT+MPUB="):
        q = cmd.find(b'",', 9)
        return (b"PUBACK",) if q > 0 and cmd[q + 2 : q + 3] != b"0" else None
    if cmd.startswith(b"AT+HTTPACTION"):
        return (b"+HTTPACTION",)
    return None


def info_for(cmd):
    """b"+CSQ" for AT+CSQ, b"+SAPBR" for AT+SAPBR=2,1; None for ATI, AT*I..."""
    if not cmd.startswith(b"AT+"):
        return None
    j = 3
    while j < len(cmd) and cmd[j : j + 1] not in (b"=", b"?"):
        j += 1
    return cmd[2:j]


def is_error(line):
    return line == b"ERROR" or line.startswith(b"+CME ERROR")


def module_items(data):
    """What the module sent, item by item, the way its dialect frames it: ("line", text),
    ("msub", topic, payload) for a +MSUB downlink, ("read", payload) for +HTTPREAD data."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        while i < n and data[i] in (13, 10):
            i += 1
        if i == n:
            break
        nl = data.find(b"\n", i)
        if nl < 0:
            nl = n
        if data.startswith(b"+MSUB:", i):
            b = data.find(b" byte,", i, nl)
            if b > 0:
                c = data.rfind(b",", i, b)
                count = int(data[c + 1 : b].decode())
                q = data.find(b'"', i, c)
                topic = data[q + 1 : data.find(b'"', q + 1, c)]
                start = b + 6
                out.append(("msub", topic, data[start : start + count]))
                i = start + count
                continue
        line = data[i:nl]
        if line.endswith(b"\r"):
            line = line[:-1]
        i = nl + 1
        if line.startswith(b"+HTTPREAD:"):
            count = int(line[10:].decode())
            out.append(("line", line))
            out.append(("read", data[i : i + count]))
            i += count
            continue
        out.append(("line", line))
    return out


class Exchange:
    """A command (and the data written at its prompt), the module's reply to it, and what
    the reply means: its final line, the error code, the lines after the final result."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.data = None
        self.reply = b""  # everything the module sent after the command (and its data)
        self.data_reply = b""


class Capture:
    def __init__(self, name):
        self.name = name
        self.meta = {}
        self.boot = b""  # module output before the first host line
        self.exchanges = []
        with open(DIR + "/" + name, "rb") as f:
            text = f.read()
        header = True
        ex = None
        for raw in text.split(b"\n"):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                continue
            if line.startswith(b"#"):
                if header and line.startswith(b"# "):
                    c = line.find(b": ")
                    if c > 0:
                        self.meta.setdefault(line[2:c].decode(), []).append(line[c + 2 :].decode())
                continue
            header = False
            if line.startswith(b"> "):
                ex = Exchange(line[2:])
                self.exchanges.append(ex)
            elif line.startswith(b">= "):
                assert ex is not None and ex.data is None, "%s: data without a command" % name
                ex.data = unescape(line[3:])
            elif line.startswith(b"<= ") or line.startswith(b"< "):
                if line.startswith(b"<= "):
                    out = unescape(line[3:])
                elif ex is not None and line[2:] == ex.cmd:
                    out = ex.cmd + b"\r"  # the echo: the command and the host's CR
                else:
                    out = b"\r\n" + line[2:] + b"\r\n"
                if ex is None:
                    self.boot += out
                elif ex.data is None:
                    ex.reply += out
                else:
                    ex.data_reply += out
            else:
                raise AssertionError("%s: bad line %r" % (name, line))
        self._analyse()

    def _analyse(self):
        """What the replay must give: downlinks, HTTPREAD data, finals, and the lines that
        arrive while no command waits and that the driver has no handler for."""
        self.downlinks = []
        self.reads = []
        self.late = []  # lines with no command waiting for them
        self.stray = []  # lines inside a reply that are neither its answer nor a URC
        for item in module_items(self.boot):
            self._take(item, self.late)
        for ex in self.exchanges:
            ex.final = None
            ex.lines = []
            got_ok = False
            then = then_for(ex.cmd)
            items = module_items(ex.reply + ex.data_reply)
            # the information prefix, as a driver asks for it: only when the reply has it
            # (AT+CIMI and AT+CIFSR answer bare text, ATI has no prefix at all)
            info = info_for(ex.cmd)
            if info and not [x for x in items if x[0] == "line" and x[1].startswith(info)]:
                info = None
            ex.info = info
            for item in items:
                if ex.final is not None:
                    self._take(item, self.late)
                    continue
                self._take(item, None)
                if item[0] != "line" or item[1].startswith(b"AT"):
                    continue  # a payload, or the echo
                line = item[1]
                if line == b"OK":
                    got_ok = True
                    if not then:
                        ex.final = line
                elif is_error(line) or (then and starts(line, then)):
                    ex.final = line
                elif ex.data is not None and (line == b"DOWNLOAD" or line[:1] == b">"):
                    pass  # the prompt for the data
                elif info and line.startswith(info):
                    ex.lines.append(line)
                elif not (starts(line, HANDLED) or starts(line, CHATTER)):
                    if info:
                        self.stray.append(line)  # not the command's answer, not a URC
                    else:
                        ex.lines.append(line)  # a command without a prefix answers bare text
            ex.code = None
            if ex.final is not None and is_error(ex.final):
                ex.code = int(ex.final[ex.final.find(b":") + 1 :]) if b":" in ex.final else None
            ex.after_ok = got_ok
        self.foreign = [x for x in self.late if not starts(x, CHATTER) and not starts(x, HANDLED)] + self.stray
        self.chatter = [x for x in self.late if starts(x, CHATTER)]

    def _take(self, item, late):
        if item[0] == "msub":
            self.downlinks.append((item[1].decode(), item[2]))
        elif item[0] == "read":
            self.reads.append(item[1])
        elif late is not None:
            late.append(item[1])

    def script(self, extra=None):
        """(expected write, reply) pairs for StubUART. extra: {command: [(cmd, reply)]}
        inserts replies the capture does not have after that command (b"" key: at the end)."""
        out = []
        for ex in self.exchanges:
            out.append((ex.cmd + b"\r", ex.reply))
            if ex.data is not None:
                out.append((ex.data, ex.data_reply))
            for cmd, reply in (extra or {}).get(ex.cmd, ()):
                out.append((cmd + b"\r", reply))
        for cmd, reply in (extra or {}).get(b"", ()):
            out.append((cmd + b"\r", reply))
        return out

    def written(self):
        return b"".join(ex.cmd + b"\r" + (ex.data or b"") for ex in self.exchanges)


def names():
    return sorted(n for n in os.listdir(DIR) if n.endswith(".txt"))


_cache = {}


def load(name):
    if name not in _cache:
        _cache[name] = Capture(name)
    return _cache[name]


class ReplayUART(StubUART):
    """StubUART whose reads come in the sizes `split` asks for (see SPLITS)."""

    def __init__(self, script, split):
        StubUART.__init__(self, script, chunk=split if split > 0 else 0)
        self.state = -split if split < 0 else 0

    def readinto(self, buf, nbytes=None):
        if self.state:
            self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
            self.chunk = 1 + self.state % 23
        return StubUART.readinto(self, buf, nbytes)


class Run:
    """One replay: the driver on a ReplayUART fed with a capture."""

    def __init__(self, name, split, extra=None):
        self.cap = load(name)
        self.uart = ReplayUART(self.cap.script(extra), split)
        self.m = Air72x(self.uart)
        self.downlinks = []
        self.events = []
        self.m.on_message = lambda topic, payload: self.downlinks.append((topic, payload))
        self.m.on_event = lambda name, detail: self.events.append((name, detail))
        self.uart.feed(self.cap.boot)
        self.at = self.m.at
        self._next = 0
        self.settle()

    def settle(self):
        """Take in everything the module has sent, as a host that waits for the module to be
        quiet before its next command (the captures were typed by hand)."""
        for _ in range(100000):
            self.m.poll()
            if not self.uart.any():
                break
        self.m.poll()

    def drv(self, method, *args, **kw):
        """Call a driver method, then settle."""
        out = getattr(self.m, method)(*args, **kw)
        self.settle()
        return out

    def raw(self, cmd=None, **kw):
        """Send the capture's next command through the engine; returns its information lines
        or the exception it raised."""
        ex = self.cap.exchanges[self._next]
        if cmd is not None:
            assert cmd == ex.cmd, "%s: next is %r, not %r" % (self.cap.name, ex.cmd, cmd)
        self._next += 1
        then = then_for(ex.cmd)
        if then:
            kw["then"] = then
        if ex.final is None:
            kw["timeout"] = NO_FINAL_MS
        try:
            lines = self.at.cmd(ex.cmd, info=ex.info, data=ex.data, **kw)
        except ATTimeout as e:
            assert ex.final is None, "%s: %r timed out, the capture has %r" % (self.cap.name, ex.cmd, ex.final)
            self.settle()
            return e
        except ATError as e:
            assert ex.code is not None or ex.final == b"ERROR" or ex.after_ok, (
                "%s: %r failed: %r" % (self.cap.name, ex.cmd, e))
            assert e.code == ex.code, "%s: %r gave code %r, the capture %r" % (self.cap.name, ex.cmd, e.code, ex.code)
            self.settle()
            return e
        assert ex.final is not None and not is_error(ex.final), "%s: %r succeeded" % (self.cap.name, ex.cmd)
        assert self.at.final == ex.final, "%s: %r ended on %r" % (self.cap.name, ex.cmd, self.at.final)
        self.settle()
        return lines

    def rest(self):
        """The capture's remaining commands, through the engine."""
        while self._next < len(self.cap.exchanges):
            self.raw()

    def skip_to(self, cmd):
        """The driver sent commands itself: move the cursor past `cmd`."""
        while self.cap.exchanges[self._next].cmd != cmd:
            self._next += 1
        self._next += 1

    def finish(self):
        """Take in what is left, then check what every replay must hold."""
        self.settle()
        name = self.cap.name
        assert self.uart.done(), "%s: the capture has commands the replay did not send" % name
        stats = self.at.stats
        assert stats["discarded"] == 0, "%s: %d discarded" % (name, stats["discarded"])
        assert self.downlinks == self.cap.downlinks, "%s: downlinks %r, captured %r" % (
            name, self.downlinks, self.cap.downlinks)
        assert stats["unknown"] <= len(self.cap.foreign), "%s: %d unknown lines; the only lines the driver may not know: %r" % (
            name, stats["unknown"], self.cap.foreign)
        return self


def every_split(fn):
    for split in SPLITS:
        try:
            fn(split)
        except AssertionError as e:
            raise AssertionError("split %d: %s" % (split, e))


def quiet(fn):
    """Run fn with the firmware's log captured (replays of unknown lines log a lot)."""
    capture_log()
    try:
        return fn()
    finally:
        release_log()


def sim_error(fn):
    """The "sim" ModemError fn raises (a SimError where the driver still has that class)."""
    e = raises(ModemError, fn)
    assert getattr(e, "kind", None) == "sim" or type(e).__name__ == "SimError", repr(e)
    return e


def subsequence(want, got):
    i = 0
    for x in got:
        if i < len(want) and x == want[i]:
            i += 1
    return i == len(want)


# ---------------------------------------------------------------------------- the suite itself
def test_at_least_15_captures_each_with_its_source_kind_module_and_date():
    ns = names()
    assert len(ns) >= 15, ns
    kinds = {"capture": 0, "documentation": 0}
    for n in ns:
        cap = load(n)
        for h in HEADERS:
            assert cap.meta.get(h), "%s: no '# %s:' header" % (n, h)
        kind = cap.meta["kind"][0]
        assert kind in KINDS, "%s: kind %r" % (n, kind)
        kinds[kind] += 1
        assert cap.exchanges, n
    assert kinds["capture"] >= 10, kinds


def test_readme_lists_every_capture():
    with open(DIR + "/README.md") as f:
        text = f.read()
    for n in names():
        assert ("`%s`" % n) in text, "%s is not in captures/README.md" % n


def test_format_escapes_and_echo_rule():
    assert unescape(b"a\\r\\n\\x00\\xff\\\\b\\t") == b"a\r\n\x00\xff\\b\t"
    cap = load("air780e_cereg_csq_cesq.txt")
    ex = cap.exchanges[2]
    assert ex.cmd == b"AT+CSQ" and ex.reply == b"AT+CSQ\r\r\n+CSQ: 25,0\r\n\r\nOK\r\n"
    assert ex.final == b"OK" and ex.lines == [b"+CSQ: 25,0"]
    # the byte-wise capture is kept as printed: the echo ends \r\r\n
    cap = load("air724ug_picow_cgmi_cgmr_csq.txt")
    assert cap.exchanges[1].reply == b'AT+CGMR\r\r\n+CGMR: "AirM2M_Air724UG_V401853_LTE_AT"\r\n\r\nOK\r\n'
    cap = load("air780ep_mqtt_pubsub_doc.txt")
    assert cap.downlinks[-1] == ("mqtt/sub_topic", b'{\n  "msg": "hello"\n}')


# ---------------------------------------------------------------------------- every capture
def test_every_capture_replays_through_the_engine():
    """Each captured command through the AT engine (with the info prefix and the final line
    the driver would use): the captured final, error code and information lines come out,
    every +MSUB downlink arrives once, byte-exact, in order, HTTPREAD data is byte-exact,
    nothing is discarded, and no known chatter counts as unknown."""
    for name in names():
        cap = load(name)

        def one(split, name=name, cap=cap):
            r = Run(name, split)
            reads = []
            for ex in cap.exchanges:
                got = r.raw()
                if isinstance(got, list) and ex.final is not None:
                    assert got == ex.lines, "%s: %r gave %r, captured %r" % (name, ex.cmd, got, ex.lines)
                    if r.at.payload is not None:
                        reads.append(r.at.payload)
            r.finish()
            assert bytes(r.uart.written) == cap.written(), name
            assert reads == cap.reads, "%s: HTTPREAD %r, captured %r" % (name, reads, cap.reads)

        quiet(lambda one=one: every_split(one))


def test_known_chatter_seen_in_the_captures_is_never_unknown():
    """Every chatter line the captures hold, fed unprompted to a fresh driver, one at a time:
    none may count as unknown (they are the module's normal boot and network output)."""
    seen = []
    for name in names():
        for line in load(name).chatter:
            if line not in seen:
                seen.append(line)
    assert len(seen) >= 10, seen
    bad = []

    def feed():
        for line in seen:
            uart = StubUART()
            m = Air72x(uart)
            uart.feed(b"\r\n" + line + b"\r\n")
            m.poll()
            if m.at.stats["unknown"] or m.at.stats["discarded"]:
                bad.append(line)

    quiet(feed)
    assert not bad, "counted as unknown: %r" % bad


# ---------------------------------------------------------------------------- Air724UG / Air720UG
def test_air724ug_version_and_signal():
    def one(split):
        r = Run("air724ug_picow_cgmi_cgmr_csq.txt", split)
        assert r.raw(b"AT+CGMI") == [b'+CGMI: "AirM2M"']
        assert r.drv("check_version") == "AirM2M_Air724UG_V401853_LTE_AT"
        assert r.m.version_number == 401853
        assert r.drv("signal") == (20, 99)
        r.skip_to(b"AT+CSQ")
        r.finish()
        assert r.at.stats["unknown"] == 0

    quiet(lambda: every_split(one))


def test_air720ug_signal_with_sim_urcs_in_between():
    def one(split):
        r = Run("air720ug_luat_ril_csq_iccid.txt", split)
        for _ in range(3):
            assert r.drv("signal") == (31, 0)
        r.skip_to(b"AT+CSQ")
        r.skip_to(b"AT+CSQ")
        r.skip_to(b"AT+CSQ")
        assert r.raw(b"AT+ICCID") == [b"+ICCID: 898600C6112051005816"]
        assert r.raw(b"AT+CIMI") == [b"460022670845816"]
        r.finish()
        assert r.events == []  # +CPIN: READY with the SIM never lost is no event

    quiet(lambda: every_split(one))


# ---------------------------------------------------------------------------- Air780E bring-up
def test_air780e_fota_reboot_chatter_then_ati():
    def one(split):
        r = Run("air780e_fota_reboot_ati.txt", split)
        r.raw(b"AT+UPGRADE")
        assert r.raw(b"ATI") == [b"AirM2M_780E_V1147_LTE_AT"]
        r.finish()
        assert [e[0] for e in r.events] == ["reboot"]
        assert not r.m.mqtt_connected and not r.m.bearer_up

    quiet(lambda: every_split(one))


def test_air780e_reset_then_version_sim_attach_subscribe_publish():
    def one(split):
        r = Run("air780e_reset_cgmr_mqtt.txt", split)
        r.raw(b"AT+RESET")
        assert r.drv("check_version") == "AirM2M_780E_V1161_LTE_AT"
        assert r.m.version_number == 1161
        r.drv("check_sim")
        assert r.drv("attached") is True
        r.skip_to(b"AT+CGATT?")
        # the capture's MIPSTART quotes the port ("1884"), mqtt_connect does not: the connect
        # runs through the engine, subscribe and publish through the driver
        r.raw(b'AT+MCONFIG="866289037465624","user","password"')
        r.raw(b'AT+MIPSTART="lbsmqtt.airm2m.com","1884"')
        r.raw(b"AT+MCONNECT=1,600")
        r.m.mqtt_connected = True
        r.drv("mqtt_subscribe", "mqtt/sub_topic", 0)
        r.drv("mqtt_publish", "mqtt/pub_topic", "publish 0 payload", 0)
        r.skip_to(b'AT+MPUB="mqtt/pub_topic",0,0,"publish 0 payload"')
        r.finish()
        assert r.m.stats["published"] == 1
        assert [e[0] for e in r.events] == ["reboot"]
        assert r.at.stats["unknown"] == 0

    quiet(lambda: every_split(one))


def test_air780e_signal():
    def one(split):
        r = Run("air780e_cereg_csq_cesq.txt", split)
        assert r.raw(b"AT+CEREG=?") == [b"+CEREG: (0,1,2,3,4,5)"]
        assert r.raw(b"AT+CEREG?") == [b"+CEREG: 0,1"]
        assert r.drv("signal") == (25, 0)
        r.skip_to(b"AT+CSQ")
        assert r.raw(b"AT+CESQ") == [b"+CESQ: 99,99,255,255,22,48"]
        r.finish()

    quiet(lambda: every_split(one))


# ---------------------------------------------------------------------------- Air780E SIM
def test_air780e_sim_pulled_and_back_are_events():
    def one(split):
        r = Run("air780e_sim_hotplug.txt", split)
        r.raw(b"AT+CSDT=1")
        r.finish()
        names_ = [e[0] for e in r.events]
        assert subsequence(["pdp_deact", "sim_removed", "sim_ready"], names_), r.events
        assert ("sim_removed", "+CPIN: SIM REMOVED 0") in r.events
        assert ("sim_ready", "+CPIN: READY 0") in r.events
        assert not r.m.bearer_up and not r.m.mqtt_connected

    quiet(lambda: every_split(one))


def test_air780e_no_sim_is_a_sim_error_until_the_slot_is_switched():
    def one(split):
        r = Run("air780e_sim_absent_simcross.txt", split)
        e = sim_error(lambda: r.drv("check_sim"))
        assert "no SIM" in str(e)
        r.skip_to(b"AT+CPIN?")
        r.raw(b"AT+CFUN=0")
        assert r.raw(b"AT+SIMCROSS=1") == [b"+SIMCROSS:1"]
        r.raw(b"AT+CFUN=1")
        r.drv("check_sim")
        r.skip_to(b"AT+CPIN?")
        r.finish()

    quiet(lambda: every_split(one))


def test_air780e_sim_pin_is_a_sim_error_until_the_pin_is_entered():
    def one(split):
        r = Run("air780e_sim_pin_lock.txt", split)
        r.drv("check_sim")
        r.skip_to(b"AT+CPIN?")
        r.raw(b'AT+CLCK="SC",1,"1234"')
        r.raw(b"AT+RESET")
        e = sim_error(lambda: r.drv("check_sim"))
        assert "SIM PIN" in str(e)
        r.skip_to(b"AT+CPIN?")
        r.raw(b'AT+CPIN="1234"')
        r.drv("check_sim")
        r.skip_to(b"AT+CPIN?")
        assert r.raw(b'AT+CLCK="SC",2') == [b"+CLCK: 1"]
        r.raw(b'AT+CLCK="SC",0,"1234"')
        r.raw(b"AT+RESET")
        r.drv("check_sim")
        r.skip_to(b"AT+CPIN?")
        r.finish()
        assert r.at.stats["unknown"] == 0

    quiet(lambda: every_split(one))


# ---------------------------------------------------------------------------- Air780EP bearer, HTTP
def test_air780ep_power_up_chatter_autobaud_attach_and_bearer():
    def one(split):
        r = Run("air780ep_boot_attach_bearer.txt", split)
        r.drv("autobaud", tries=1)
        r.drv("autobaud", tries=1)
        r.skip_to(b"AT")
        r.skip_to(b"AT")
        r.drv("check_sim")
        assert r.drv("attached") is True
        r.skip_to(b"AT+CGATT?")
        r.raw(b"AT+CSTT")
        r.raw(b"AT+CIICR")
        assert isinstance(r.raw(b"AT+CIFSR"), ATTimeout)  # a bare address, never an OK
        assert r.at.lines == [b"10.222.163.213"]
        assert r.drv("bearer_open", "") == "10.222.163.213"
        assert r.m.bearer_up
        r.skip_to(b"AT+SAPBR=2,1")
        r.finish()
        assert r.at.stats["unknown"] == 0  # ^MODE, +E_UTRAN Service, +CGEV, +NITZ
        assert r.events == []

    quiet(lambda: every_split(one))


def test_air780ep_aliyun_http_auth_then_mqtt_connect():
    synth = {b"AT+MCONNECT=1,120": [(b"AT+MQTTMSGSET=0", OK)]}  # not in the capture

    def one(split):
        r = Run("air780ep_aliyun_http_auth.txt", split, synth)
        assert r.drv("attached") is True
        r.skip_to(b"AT+CGATT?")
        # bearer_open would also ask SAPBR=2,1, and http_post quotes the URL: the capture
        # has neither, so these go through the engine
        for _ in range(3):
            r.raw()
        r.raw(b"AT+HTTPINIT")
        r.raw()
        r.raw()
        r.raw(b"AT+HTTPDATA=112,20000")
        r.raw(b"AT+HTTPACTION=1")
        assert r.at.final == b"+HTTPACTION: 1,200,124"
        r.raw(b"AT+HTTPREAD")
        assert r.at.payload == load("air780ep_aliyun_http_auth.txt").reads[0] and len(r.at.payload) == 124
        r.drv("mqtt_connect", "868488076506128", "2BGmgWFvoXlbi1Er9sk4k1hip0", "137eb0759ca248b79383a60c0b0e0f80",
                         "a1qsHBbKtmc.iot-as-mqtt.cn-shanghai.aliyuncs.com", 1883, tls=True, keepalive=120)
        assert r.m.mqtt_connected
        r.skip_to(b"AT+MCONNECT=1,120")
        r.finish()
        assert r.events == []

    quiet(lambda: every_split(one))


def test_air780ep_aliyun_direct_connect_publish_subscribe():
    synth = {b"AT+MCONNECT=1,120": [(b"AT+MQTTMSGSET=0", OK)]}  # not in the capture there
    update = "/k1hipglLdjU/868488076506128/user/update"

    def one(split):
        r = Run("air780ep_aliyun_direct_pubsub.txt", split, synth)
        r.drv("mqtt_connect", "868488076506128|securemode=3,signmethod=hmacmd5|", "868488076506128&k1hipglLdjU",
                         "0f655b12adf519b9a7a2b0a990f398b6", "k1hipglLdjU.iot-as-mqtt.cn-shanghai.aliyuncs.com",
                         1883, tls=True, keepalive=120)
        r.drv("mqtt_publish", update, "HelloWorld", 0)
        r.drv("mqtt_publish", update, b"HelloWorld", 1)
        r.drv("mqtt_subscribe", "/k1hipglLdjU/868488076506128/user/get", 0)
        r.skip_to(b'AT+MSUB="/k1hipglLdjU/868488076506128/user/get",0')
        assert r.raw(b"AT+MQTTMSGSET=0") == []
        r.finish()
        assert r.m.mqtt_connected
        assert r.m.stats["published"] == 2 and r.m.stats["acked"] == 1
        assert r.at.stats["unknown"] == 0

    quiet(lambda: every_split(one))


def test_air780ep_aliyun_dynamic_register_through_http_post():
    synth = {b"": [(b"AT+HTTPTERM", OK)]}  # http_post always ends a session; not captured
    body = b"productKey=k1hipglLdjU&deviceName=868488076506128&random=123456&sign=20558baadb2a0b04847767980f0ee67b&signMethod=HmacMD5"

    def one(split):
        r = Run("air780ep_aliyun_dynamic_register.txt", split, synth)
        assert r.drv("attached") is True
        r.skip_to(b"AT+CGATT?")
        for _ in range(3):
            r.raw()
        status, data = r.drv("http_post", "https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device", body)
        assert status == 200
        assert data == load("air780ep_aliyun_dynamic_register.txt").reads[0] and len(data) == 149
        r.skip_to(b"AT+HTTPREAD")
        r.finish()

    quiet(lambda: every_split(one))


def test_air780ep_http_pdp_loss_is_an_event_and_601():
    def one(split):
        r = Run("air780ep_http_pdp_deact_doc.txt", split)
        r.m.bearer_up = True
        for _ in range(3):
            r.raw()
        r.raw(b"AT+HTTPACTION=0")
        assert r.at.final == b"+HTTPACTION: 0,601,0"
        r.raw(b"AT+HTTPTERM")
        e = r.raw(b"AT+SAPBR=0,1")
        assert isinstance(e, ATError) and e.code == 3
        r.finish()
        assert [x[0] for x in r.events] == ["pdp_deact"]
        assert not r.m.bearer_up

    quiet(lambda: every_split(one))


# ---------------------------------------------------------------------------- Air780EP MQTT
def test_air780ep_cached_and_pushed_downlinks_arrive_once_in_order():
    def one(split):
        r = Run("air780ep_mqtt_pubsub_doc.txt", split)
        r.m.mqtt_connected = True  # the page elides the connection ("...")
        r.drv("mqtt_subscribe", "mqtt/pub_topic")
        r.drv("mqtt_publish", "mqtt/pub_topic", "publish 1 payload")
        r.skip_to(b'AT+MPUB="mqtt/pub_topic",0,0,"publish 1 payload"')
        r.raw(b"AT+MQTTMSGGET?")
        r.raw(b"AT+MQTTMSGGET")
        r.raw(b"AT+MQTTMSGSET=0")
        r.drv("mqtt_publish", "mqtt/pub_topic", "publish 1 payload")
        r.drv("mqtt_subscribe", "mqtt/sub_topic")
        r.drv("mqtt_publish", "mqtt/sub_topic", "123456")
        r.skip_to(b'AT+MPUB="mqtt/sub_topic",0,0,"123456"')
        r.raw(b"AT+MQTTMSGSET=0")
        r.raw(b"AT+MQTTMSGGET")
        r.raw(b"AT+MQTTMSGGET")
        r.finish()
        hello = b'{\n  "msg": "hello"\n}'
        assert r.downlinks == [("mqtt/pub_topic", b"publish 1 payload"), ("mqtt/pub_topic", b"publish 1 payload"),
                               ("mqtt/sub_topic", b"123456"), ("mqtt/sub_topic", hello),
                               ("mqtt/sub_topic", hello), ("mqtt/sub_topic", hello)]
        assert r.m.stats["downlinks"] == 6 and r.m.stats["downlinks_dropped"] == 0
        assert r.at.stats["unknown"] == 0

    quiet(lambda: every_split(one))


def test_air780ep_closed_right_after_connack_is_a_link_event():
    def one(split):
        r = Run("air780ep_mqtt_closed_doc.txt", split)
        r.raw()
        r.raw()
        r.raw(b"AT+MCONNECT=1,60")
        e = r.raw(b"AT+MIPCLOSE")
        assert isinstance(e, ATError) and e.code == 767
        assert [x for x in r.events] == [("closed", "CLOSED")]
        assert not r.m.mqtt_connected
        r.rest()
        r.finish()

    quiet(lambda: every_split(one))


def test_air780ep_pdp_loss_right_after_connack_is_a_link_event():
    def one(split):
        r = Run("air780ep_mqtt_pdp_deact_doc.txt", split)
        r.raw()
        r.raw()
        r.raw(b"AT+MCONNECT=1,60")
        r.raw(b"AT+MIPCLOSE")
        assert r.events == [("pdp_deact", "+CGEV: NW PDN DEACT 1")]
        r.rest()
        r.finish()

    quiet(lambda: every_split(one))


def test_air780ep_onenet_connect_subscribe_publish_escaped_json():
    synth = {b"AT+MCONNECT=1,120": [(b"AT+MQTTMSGSET=0", OK)]}  # not in the page
    password = ("version=2018-10-31&res=products%2FWf5IXIGcZn%2Fdevices%2F868655072230313&et=1721630715"
                "&method=md5&sign=DPqCcsPQAQok9Gt7mNPTbA%3D%3D")

    def one(split):
        r = Run("air780ep_onenet_doc.txt", split, synth)
        r.drv("check_sim")
        assert r.drv("signal") == (16, 0)
        assert r.drv("attached") is True
        r.skip_to(b"AT+CGATT?")
        assert r.raw(b"AT+CGDCONT?") == [b'+CGDCONT: 1,"IP","cmiot","10.126.200.230"']
        r.drv("mqtt_connect", "868655072230313", "Wf5IXIGcZn", password, "studio-mqtt.heclouds.com", 1883,
                         tls=False, keepalive=120)
        r.drv("mqtt_subscribe", "$sys/Wf5IXIGcZn/868655072230313/thing/property/post/reply", 0)
        r.drv("mqtt_publish", "$sys/q23GT8XVOu/868739055238251/thing/property/post", "{}")
        # the driver's escaping gives the page's command byte for byte (\22 for each quote)
        r.drv("mqtt_publish", "$sys/Wf5IXIGcZn/868655072230313/thing/property/post",
                         '{"id":"123","params":{"Capacity":{"value":62}}}')
        r.skip_to(r.cap.exchanges[-1].cmd)
        r.finish()
        assert r.downlinks == [
            ("$sys/q23GT8XVOu/868739055238251/thing/property/post/reply", b'{"id":null,"code":2403,"msg":"required msg id"}'),
            ("$sys/Wf5IXIGcZn/868655072230313/thing/property/post/reply", b'{"id":"123","code":200,"msg":"success"}'),
        ]

    quiet(lambda: every_split(one))
