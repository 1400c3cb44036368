"""What the radio gives every part: the SIM, the packet attach, the PDP context and the
bearer's address (Net, one per module, owned by the core), and the network as the module's
sockets see it: DNS as the emulator plays it, TLS without verification, closing a socket.

DNS: every host ending in `aliyuncs.com` goes to the local cloud; 127.0.0.1 and localhost
are reached directly; anything else is a DNS failure.
"""
import socket
import ssl
import time


class Net:
    """sim: a SIM card is in. attach_after: an int = AT+CGATT? answers 0 that many polls
    after power-up; a float = that many seconds after it."""

    OPTIONS = {"sim": True, "attach_after": 0}

    def __init__(self, sim=True, attach_after=0):
        self.sim = bool(sim)
        self.attach_after = attach_after
        self.power_on(time.monotonic())

    def power_on(self, now):
        """Everything a restart forgets: not attached yet, no bearer."""
        self._restart_attach(self.attach_after, now)
        self.detached = False           # AT+CGATT=0
        self.bearer_open = False
        self.bearer_ip = None
        self.pdp_lost = False           # the context went away (until the bearer reopens)

    def _restart_attach(self, down, now):
        if isinstance(down, float):
            self._attach_polls, self._attach_at = 0, now + down
        else:
            self._attach_polls, self._attach_at = int(down), 0.0

    def restart_attach(self, down):
        """Attach starts over: AT+CGATT? answers 0 for `down` polls (int) or seconds (float)."""
        self._restart_attach(down, time.monotonic())

    @property
    def attached(self):
        if not self.sim or self.detached:
            return False
        return self._attach_polls <= 0 and time.monotonic() >= self._attach_at

    def poll_attached(self):
        """AT+CGATT? once: each poll counts one of the polls still to wait."""
        if self._attach_polls > 0:
            self._attach_polls -= 1
            return False
        return self.attached

    def attach(self):
        """AT+CGATT=1: attached at once."""
        self.detached = False
        self._attach_polls, self._attach_at = 0, 0.0
        self.pdp_lost = False

    def bearer_down(self):
        self.bearer_open = False
        self.bearer_ip = None


def resolve(host):
    """Where a connection to `host` goes: "cloud" (the local cloud), "local" (127.0.0.1 at
    the port asked for) or None (a DNS failure)."""
    h = host.lower().rstrip(".")
    if h.endswith("aliyuncs.com"):
        return "cloud"
    if h in ("127.0.0.1", "localhost"):
        return "local"
    return None


def tls_context():
    """The module's TLS client: it verifies nothing (the local cloud's CA is private)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def close_socket(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
