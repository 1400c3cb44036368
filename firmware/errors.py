# The firmware's one error vocabulary. Every error the modem, cloud and link layers raise
# is a ModemError, and its `kind` is what the supervisor (firmware/link.py, _classify)
# recovers by:
#   "timeout"  the module did not answer in time (ATTimeout), or not at all (autobaud)
#   "error"    the module answered ERROR / +CME ERROR (ATError: .code, .after_ok)
#   "aborted"  a URC ended the wait: RDY, the SIM removed (ATAbort: .line)
#   "link"     the MQTT link, the bearer or the module went away during a command
#   "refused"  the MQTT server refused the CONNECT: check the device triple
#   "connect"  TCP/TLS or HTTP could not be made (no bearer, DNS, TLS, HTTP 6xx)
#   "sim"      no SIM, or one that is not ready
#   "version"  the module's firmware is too old for what was asked
#   "attach"   not attached to the packet network in time
#   "cloud"    the platform's auth or registration answered with an error (CloudError: .code)
#   "modem"    anything else the module did that makes no sense
# A class of its own only where the error carries fields (each class costs RAM on a board);
# everything else is ModemError(message, kind). A UART that cannot be opened (before any
# module is there) is a UARTError naming the config field, and whether a retry can help.


class ModemError(Exception):
    kind = "modem"

    def __init__(self, message, kind=None):
        super().__init__(message)
        if kind:
            self.kind = kind


class ATError(ModemError):
    """The module answered ERROR or +CME ERROR: <code> (code is None for plain ERROR)."""

    kind = "error"

    def __init__(self, cmd, code=None, line=None, after_ok=False):
        super().__init__("%s failed: %s" % (cmd, line or "ERROR"))
        self.cmd = cmd
        self.code = code
        self.line = line
        self.after_ok = after_ok  # OK came first: the later step failed (a refused CONNACK)


class ATTimeout(ModemError):
    """No final result within the command's deadline."""

    kind = "timeout"

    def __init__(self, cmd, ms, stage=""):
        super().__init__("%s: no %s within %d ms" % (cmd, stage or "reply", ms))
        self.cmd = cmd
        self.ms = ms


class ATAbort(ModemError):
    """A URC in `abort` (CLOSED, RDY, ...) arrived while the command waited."""

    kind = "aborted"

    def __init__(self, cmd, line):
        super().__init__("%s interrupted by %s" % (cmd, line))
        self.cmd = cmd
        self.line = line


class CloudError(ModemError):
    """The platform answered with an error code."""

    kind = "cloud"

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class UARTError(Exception):
    def __init__(self, field, why, retry=False):
        super().__init__("%s: %s" % (field, why))
        self.field = field
        self.retry = retry


def reason(e):
    """An OSError as a short reason: its errno's name ("ECONNREFUSED") when it has one."""
    n = e.args[0] if e.args else None
    if isinstance(n, int):
        try:
            from errno import errorcode

            if n in errorcode:
                return errorcode[n]
        except ImportError:
            pass
    from firmware.log import safe

    return safe(str(e), 80) or type(e).__name__
