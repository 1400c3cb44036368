# Diagnostics for the REPL of a board whose main loop was stopped (Ctrl-C), or for a PC in
# host mode (tools/host.py --diag):
#
#   import firmware.diag as d
#   d.report()          what the module, the SIM, the network and the firmware say now
#   d.at("AT+CSQ")      one AT command, its raw reply lines
#   d.check()           step by step connection check: PASS/FAIL, stops at the first FAIL
#                       and says what to check
#   d.bridge()          type AT commands to the module yourself; Ctrl-] leaves
#
# They use the running app's modem (firmware.app.current) when there is one, else they open
# the UART named in config.json. Every function takes out=callable(line) (default print).
# Nothing here ever prints a secret (firmware/log.py's redaction rule): config is shown
# through config.masked(), text from the module that explains a failure (a version, an error)
# through log.safe() / log.err(), an auth answer by its code only; and every line goes
# through a filter that masks the text of each secret diag knows of (DeviceSecret,
# ProductSecret, the direct flow's MQTT password, a token it fetched or the link holds).
import sys

from firmware import config as _config
from firmware import log
from firmware.port import MICROPYTHON, sleep_ms

_session = None  # (modem, cfg, link) opened by diag itself when no app is running
ESCAPE = 0x1D  # Ctrl-]: leaves bridge()

REG_STAT = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "not registered, searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}
MQTT_STATE = {0: "offline", 1: "connected", 2: "TCP up, no MQTT session"}
BEARER_STATE = {0: "connecting", 1: "up", 2: "closing", 3: "closed"}

APN_HINT = (
    "check \"apn\" in config.json: CMIIOT or CMNET (China Mobile), 3GNET (China Unicom), "
    "CTNET (China Telecom), your IoT card's APN, or \"\" for the network's default"
)
HINTS = {
    "at": "no reply to AT: check the module's power (its own 5 V/3.8 V supply, ~2 A peaks), "
          "TX->RX and RX->TX crossed, a common ground, a level shifter for the bare module's "
          "1.8 V UART, the UART id/pins and the baud rate in config.json",
    "version": "upgrade the module firmware with Luatools: Aliyun MQTT needs V409 or later",
    "sim": "insert a SIM card with a data plan (contacts down, module powered off), no PIN lock",
    "signal": "connect the LTE antenna; check coverage and that the card works in this band",
    "register": "the network refused or has not yet accepted the SIM: wait a minute after "
                "power-up; check the card is activated, has a data plan, and the antenna",
    "attach": "not attached to the packet network: check the data plan, the antenna and " + APN_HINT,
    "bearer": "the bearer did not open: " + APN_HINT,
    "auth": "the auth server refused the device: check product_key, device_name, "
            "device_secret, sign_method and region (or instance_id) in config.json",
    "connect": "no TCP/TLS connection to the MQTT server: check instance_id/mqtt_host/region, mqtt_port, "
               "\"tls\" (true: SSLMIPSTART), DNS, and that the bearer is up",
    "refused": "the server refused the MQTT CONNECT: check product_key, device_name, "
               "device_secret, sign_method, client_id, and that the device is enabled in the console",
}


# ---------------------------------------------------------------------- context and output
def use(modem=None, cfg=None, link=None):
    """Make diag work on this modem/config (tests, tools/host.py); use() alone forgets it."""
    global _session
    _session = (modem, cfg, link) if modem is not None or cfg is not None else None


def _context(modem=None, cfg=None, link=None):
    """(modem, cfg, link): the given modem, else the running app's, else diag's own session
    (use(), or the UART of config.json opened on first use)."""
    if modem is None:
        app = sys.modules.get("firmware.app")
        cur = getattr(app, "current", None) if app else None
        if cur is not None:
            modem, cfg, link = cur.modem, cfg or cur.cfg, link or cur.link
        elif _session is not None:
            modem, cfg, link = _session[0], cfg or _session[1], link or _session[2]
    if cfg is None:
        try:
            cfg = _config.load()
        except _config.ConfigError:
            if modem is None:
                raise
            cfg = {}  # a modem given without a config: nothing to connect with, nothing to mask
    if modem is None:
        modem = _open(cfg)
    return modem, cfg, link


def _open(cfg):
    global _session
    from firmware.air72x import Air72x
    from firmware.uart import open_uart

    modem = Air72x(open_uart(cfg["uart"]))
    _session = (modem, cfg, None)
    return modem


class _Out:
    """The output sink: masks every secret diag knows of, whatever printed it."""

    def __init__(self, out, cfg, link=None):
        self.out = out or print
        self.secrets = [cfg[k] for k in _config.SECRETS if cfg and isinstance(cfg.get(k), str) and cfg.get(k)]
        self.add(_password(cfg))
        token = getattr(link, "_token", None)  # the "http" flow's (user, iotToken, ...)
        if isinstance(token, tuple) and len(token) > 1:
            self.add(token[1])

    def add(self, secret):
        if isinstance(secret, str) and secret and secret not in self.secrets:
            self.secrets.append(secret)

    def __call__(self, line):
        line = str(line)
        for s in self.secrets:
            if s in line:
                line = line.replace(s, "****")
        self.out(line)

    def row(self, name, value):
        self("%-10s %s" % (name, value))


# ---------------------------------------------------------------------- readings
def dbm(rssi):
    """CSQ rssi 0..31 -> dBm (-113 + 2*rssi); None for 99 (unknown)."""
    if rssi is None or rssi == 99 or not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


def signal_words(rssi):
    if rssi is None or rssi == 99:
        return "unknown (no signal measured)"
    if rssi <= 1:
        return "none"
    if rssi < 10:
        return "poor"
    if rssi < 15:
        return "fair"
    if rssi < 20:
        return "good"
    return "excellent"


def signal_text(rssi, ber=99):
    d = dbm(rssi)
    if d is None:
        return "rssi %s: %s" % (rssi, signal_words(rssi))
    return "rssi %d = %s%d dBm (%s)" % (rssi, "<= " if rssi == 0 else ">= " if rssi == 31 else "", d, signal_words(rssi))


def _ints(s):
    """at.ints() of module text that is already a str."""
    from firmware.at import ints

    return ints(s.encode())


def _info_prefix(cmd):
    """AT+CSQ -> b"+CSQ", AT+CPIN? -> b"+CPIN", ATI -> None: the reply's information prefix."""
    if not cmd[:3].upper() == "AT+":
        return None
    end = 3
    while end < len(cmd) and cmd[end] not in "=?":
        end += 1
    return cmd[2:end].upper().encode()


def _value(lines, prefix=None):
    """The text of the last information line, without `prefix:` and quotes."""
    if not lines:
        return None
    from firmware.at import text as _text  # bytes that are not UTF-8 as '?'

    text = _text(lines[-1]) if isinstance(lines[-1], bytes) else lines[-1]
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :].lstrip().lstrip(":")
    return text.strip().strip('"')


def _probe(modem, tries=3):
    """True when the module answers AT (a few short tries: autobaud)."""
    from firmware.errors import ModemError

    for _ in range(tries):
        try:
            modem.at.cmd("AT", timeout=300)
            return True
        except ModemError:
            pass
    return False


def _err(e):
    return log.err(e)


def _refusal(check, kind):
    """The ModemError of `kind` that check() raised (the module's answer that a step
    fails), or None when it passed; any other error goes on up."""
    from firmware.errors import ModemError

    try:
        check()
    except ModemError as e:
        if e.kind != kind:
            raise
        return e
    return None


def _version(modem):
    """The module's version as far as it may be shown (log.safe)."""
    return log.safe(modem.version, 48)


def _password(cfg):
    """The direct flow's MQTT password (the same sign on every connect), to be masked."""
    if not cfg or cfg.get("auth") != "mqtt" or not cfg.get("device_secret"):
        return None
    try:
        from firmware import aliyun, sign

        return sign.mqtt_credentials(cfg["product_key"], cfg["device_name"], cfg["device_secret"],
                                     aliyun.client_id(cfg), cfg["sign_method"])[2]
    except Exception:  # a config that cannot sign cannot connect either: nothing to mask
        return None


def _iccid(modem):
    from firmware.errors import ATError

    try:
        return _value(modem.at.cmd("AT+ICCID", info=b"+ICCID"), "+ICCID")
    except ATError:
        return _value(modem.at.cmd("AT+CCID", info=b"+CCID"), "+CCID")


def _reg(modem, cmd):
    """(stat, meaning) of AT+CREG? / AT+CEREG?."""
    prefix = cmd[2:-1]
    v = _ints(_value(modem.at.cmd(cmd, info=prefix.encode())) or "")
    stat = v[1] if len(v) >= 2 else v[0] if v else None
    return stat, "?" if stat is None else REG_STAT.get(stat, "?")


def _bearer(modem):
    lines = modem.at.cmd("AT+SAPBR=2,1", info=b"+SAPBR")
    if not lines:
        return None, None
    from firmware.at import text

    parts = text(lines[-1]).split(",")
    status = _ints(",".join(parts[:2]))[-1] if len(parts) >= 2 else None
    ip = parts[2].strip().strip('"') if len(parts) >= 3 else None
    return status, ip


# ---------------------------------------------------------------------- report()
def report(out=None, modem=None, cfg=None, link=None):
    """Print what the module and the firmware know now. Never raises for a module error."""
    modem, cfg, link = _context(modem, cfg, link)
    w = _Out(out, cfg, link)
    w("--- module")
    if not _probe(modem):
        w.row("module", "NO REPLY to AT: " + HINTS["at"])
    else:
        _rows(w, modem)
    w("--- firmware")
    if link is not None:
        try:
            stats = link.stats()
            w.row("link", "state %s" % stats.pop("state", "?"))
            for k in sorted(stats):
                w.row("  " + k, stats[k])
        except Exception as e:
            w.row("link", "ERROR " + _err(e))
    else:
        w.row("link", "not running (the app was not started in this session)")
    at_stats = getattr(getattr(modem, "at", None), "stats", None)
    if at_stats:
        w.row("AT engine", ", ".join("%s %s" % (k, at_stats[k]) for k in sorted(at_stats)))
    mstats = getattr(modem, "stats", None)
    if mstats:
        w.row("driver", ", ".join("%s %s" % (k, mstats[k]) for k in sorted(mstats)))
    w("--- config (secrets masked)")
    m = _config.masked(cfg)
    for k in sorted(m):
        w.row(k, m[k])


def _rows(w, modem):
    def row(name, fn):
        try:
            w.row(name, fn())
        except Exception as e:
            w.row(name, "ERROR " + _err(e))

    def version():
        if _refusal(modem.check_version, "version"):
            return "%s: TOO OLD, %s" % (_version(modem), HINTS["version"])
        return "%s (V%s)" % (_version(modem), modem.version_number)

    def sim():
        from firmware.errors import ATError

        try:
            return _value(modem.at.cmd("AT+CPIN?", info=b"+CPIN"), "+CPIN")
        except ATError as e:
            return "%s (%s)" % (log.safe(e.line), "no SIM card" if e.code == 10 else "not ready")

    def signal():
        rssi, ber = modem.signal()
        return signal_text(rssi, ber) + (", ber %s" % ber)

    def reg(cmd):
        return lambda: "stat %s (%s)" % _reg(modem, cmd)

    def attach():
        return "attached (+CGATT: 1)" if modem.attached() else "NOT attached (+CGATT: 0)"

    def bearer():
        status, ip = _bearer(modem)
        state = None if status is None else BEARER_STATE.get(status)
        return "%s, IP %s" % (state or "status %s" % status, ip)

    def mqtt():
        st = modem.mqtt_status()
        return "%s (%s)" % (st, MQTT_STATE.get(st, "?"))

    row("version", version)
    row("IMEI", lambda: _value(modem.at.cmd("AT+CGSN"), "+CGSN"))  # bare digits on most builds: no info prefix
    row("ICCID", lambda: _iccid(modem))
    row("SIM", sim)
    row("signal", signal)
    row("CREG", reg("AT+CREG?"))
    row("CEREG", reg("AT+CEREG?"))
    row("attach", attach)
    row("bearer", bearer)
    row("MQTT", mqtt)


# ---------------------------------------------------------------------- at()
def at(cmd, timeout=5000, out=None, modem=None, cfg=None, link=None):
    """Send one AT command; print its reply lines and the final result (the secrets diag
    knows of masked). Returns the lines."""
    from firmware.at import text
    from firmware.errors import ATError, ATTimeout, ModemError

    modem, cfg, link = _context(modem, cfg, link)
    w = _Out(out, cfg, link)
    lines = []
    try:
        lines = [text(x) for x in modem.at.cmd(cmd, timeout=timeout, info=_info_prefix(cmd))]
        final = text(modem.at.final or b"OK")
    except ATError as e:
        lines = [text(x) for x in modem.at.lines]
        final = e.line or "ERROR"
    except ATTimeout:
        lines = [text(x) for x in modem.at.lines]
        final = "(no final result within %d ms)" % timeout
    except ModemError as e:
        final = "(%s)" % _err(e)
    for line in lines:
        w(line)
    w(final)
    return lines + [final]


# ---------------------------------------------------------------------- check()
class _Step:
    def __init__(self, w):
        self.w = w
        self.n = 0
        self.failed = None

    def __call__(self, name, fn, hint):
        """Run fn() -> detail (str); PASS, or FAIL with `hint` and stop (return False)."""
        if self.failed:
            return False
        self.n += 1
        try:
            r = fn()  # (ok, detail) or (ok, detail, a hint that fits better)
        except Exception as e:
            r = (False, _err(e))
        ok, detail = r[0], r[1]
        if len(r) > 2:
            hint = r[2]
        self.w("%s %d. %s: %s" % ("PASS" if ok else "FAIL", self.n, name, detail))
        if not ok:
            self.failed = name
            self.w("     check: " + hint)
        return ok


def check(out=None, modem=None, cfg=None, attach_ms=30000, connect=True, link=None):
    """Step-by-step connection check. Returns None when every step passed, else the name of
    the first failing step. connect=False stops before the MQTT connect."""
    from firmware import aliyun
    from firmware.errors import CloudError, ModemError
    from firmware.port import ticks_add, ticks_diff, ticks_ms

    modem, cfg, link = _context(modem, cfg, link)
    w = _Out(out, cfg, link)
    step = _Step(w)

    def answers():
        return _probe(modem, 5), "module answers AT"

    def version():
        if _refusal(modem.check_version, "version"):
            return False, "%s is older than V409" % _version(modem)
        return True, _version(modem)

    def sim():
        e = _refusal(modem.check_sim, "sim")
        return (False, str(e)) if e else (True, "READY")

    def signal():
        rssi, _ = modem.signal()
        return rssi not in (99, 0, 1), signal_text(rssi)

    def registered():
        seen = []
        deadline = ticks_add(ticks_ms(), attach_ms)
        while True:
            seen = []
            for cmd in ("AT+CEREG?", "AT+CREG?"):
                try:
                    stat, meaning = _reg(modem, cmd)
                except Exception:
                    continue
                seen.append("%s stat %s (%s)" % (cmd[3:-1], stat, meaning))
                if stat in (1, 5):
                    return True, seen[-1]
                if stat == 3:
                    return False, seen[-1]
            if ticks_diff(deadline, ticks_ms()) <= 0:
                return False, "; ".join(seen) or "no CREG/CEREG reply"
            modem.sleep(1000)

    def attach():
        deadline = ticks_add(ticks_ms(), attach_ms)
        while not modem.attached():
            if ticks_diff(deadline, ticks_ms()) <= 0:
                return False, "+CGATT: 0 after %d s" % (attach_ms // 1000)
            modem.sleep(1000)
        return True, "+CGATT: 1"

    def bearer():
        status, ip = _bearer(modem)
        if status == 1 and ip and ip != "0.0.0.0":
            return True, "already open, IP %s (APN %r)" % (ip, cfg["apn"])
        ip = modem.bearer_open(cfg["apn"])
        return bool(ip) and ip != "0.0.0.0", "IP %s (APN %r)" % (ip, cfg["apn"])

    def mqtt():
        if modem.mqtt_status() == 1:
            return True, "already connected (the app's session)"
        try:
            cid, user, password, host, port = aliyun.credentials(modem, cfg)
        except CloudError as e:  # its text names the platform's code, never the answer
            return False, "auth: %s" % e, HINTS["auth"]
        w.add(password)  # an iotToken just fetched ("http" flow)
        try:
            modem.mqtt_connect(cid, user, password, host, port, tls=cfg["tls"], keepalive=cfg["keepalive"])
        except ModemError as e:
            if e.kind == "refused":
                return False, "%s:%d refused the CONNECT (%s)" % (host, port, log.safe(str(e), 200)), HINTS["refused"]
            if e.kind != "connect":
                raise
            return False, "%s:%d %s" % (host, port, log.safe(str(e), 200))  # may quote state lines
        try:
            modem.mqtt_disconnect()
        except Exception:
            pass
        return True, "CONNACK OK from %s:%d as %s (%s, disconnected again)" % (host, port, cid, "TLS" if cfg["tls"] else "TCP")

    w("connection check for %s/%s (%s flow, %s)" % (cfg["product_key"], cfg["device_name"], cfg["auth"], "TLS" if cfg["tls"] else "TCP"))
    step("module answers AT", answers, HINTS["at"])
    step("module firmware >= V409", version, HINTS["version"])
    step("SIM card", sim, HINTS["sim"])
    step("signal", signal, HINTS["signal"])
    step("network registration", registered, HINTS["register"])
    step("packet attach", attach, HINTS["attach"])
    step("bearer (APN)", bearer, HINTS["bearer"])
    if connect:
        step("MQTT connect with the configured device", mqtt, HINTS["connect"])
    if step.failed:
        w("stopped at step %d (%s)" % (step.n, step.failed))
    else:
        w("all %d steps passed" % step.n)
    return step.failed


# ---------------------------------------------------------------------- bridge()
class _Stdin:
    """Non-blocking keyboard bytes: select.poll on MicroPython, a raw tty on CPython."""

    def __init__(self):
        import select

        self._stream = getattr(sys.stdin, "buffer", sys.stdin)
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._tty = None
        if not MICROPYTHON:
            try:
                import termios  # pyright: ignore[reportMissingImports]  (CPython host mode)
                import tty  # pyright: ignore[reportMissingImports]

                fd = sys.stdin.fileno()
                self._tty = (fd, termios.tcgetattr(fd))
                tty.setraw(fd)
            except Exception:
                self._tty = None

    def read(self):
        if not self._poll.poll(0):
            return None
        if MICROPYTHON:
            b = self._stream.read(1)
        else:
            import os

            b = os.read(sys.stdin.fileno(), 256)
        if isinstance(b, str):
            b = b.encode()
        return b or None

    def close(self):
        if self._tty:
            import termios  # pyright: ignore[reportMissingImports]

            termios.tcsetattr(self._tty[0], termios.TCSADRAIN, self._tty[1])


def _stdout_write(data):
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None:
        buf.write(data)
        if hasattr(buf, "flush"):
            buf.flush()
    else:
        sys.stdout.write(data.decode())


def bridge(modem=None, keys=None, write=None, escape=ESCAPE, echo=True, idle_ms=2):
    """Bytes typed go to the module, the module's bytes come back, until Ctrl-] (escape).

    keys:  object with read() -> bytes or None (default: the REPL's stdin, non-blocking)
    write: callable(bytes) for the module's output (default: stdout)
    echo:  echo typed keys locally (the firmware turns the module's echo off with ATE0)
    Enter sends CR, which is what the module expects."""
    modem, cfg, _ = _context(modem)
    uart = modem.at.uart
    own_keys = keys is None
    keys = keys or _Stdin()
    write = write or _stdout_write
    esc = bytes([escape])
    write(b"bridge to the module: type AT commands, Ctrl-] leaves\r\n")
    buf = bytearray(256)
    try:
        while True:
            data = keys.read()
            if data:
                stop = esc in data
                if stop:
                    data = data[: data.find(esc)]
                if data:
                    uart.write(data)
                    if echo:
                        write(data.replace(b"\r", b"\r\n"))
                if stop:
                    break
            n = uart.readinto(buf)
            if n:
                write(bytes(buf[:n]))
            elif not data:
                sleep_ms(idle_ms)
    except KeyboardInterrupt:
        pass
    finally:
        if own_keys:
            keys.close()
    write(b"\r\nbridge closed\r\n")
