"""What the radio and the module's storage give every part: the SIM, the radio (flight
mode), the packet attach, the PDP context and the bearer's address; the file system (flash:
it survives restarts) and the SSL contexts of AT+SSLCFG (forgotten at a restart) (Net, one
per module, owned by the core); and the network as the module's sockets see it: DNS as the
emulator plays it, the TLS client of an SSL context, closing a socket.

DNS: every host ending in `aliyuncs.com` goes to the local cloud; 127.0.0.1 and localhost
are reached directly; anything else is a DNS failure.

TLS: an SSL context at seclevel 0 (the default) verifies nothing; at seclevel 1 or 2 the
server's certificate must chain to the CA file the context names ("cacert", a file of the
module's file system) and carry the name the module connects to (the host of SSLMIPSTART
or of the URL; SSLCFG "hostname" replaces it). Every handshake is recorded in
Net.handshakes as (context, server name, verified, error or None).
"""
import socket
import ssl
import time


class TLSSetupError(Exception):
    """The context cannot make a TLS client (seclevel 1 without a usable CA file)."""


class Net:
    """sim: a SIM card is in. attach_after: an int = AT+CGATT? answers 0 that many polls
    after power-up; a float = that many seconds after it. sim_busy: AT+CPIN? answers +CME
    ERROR: 14 (SIM busy) after power-up for that many polls (an int) or seconds (a float)."""

    OPTIONS = {"sim": True, "attach_after": 0, "sim_busy": 0.0}

    def __init__(self, sim=True, attach_after=0, sim_busy=0.0):
        self.sim = bool(sim)
        self.attach_after = attach_after
        self.sim_busy = sim_busy
        self.files = {}                 # the file system: name -> bytearray (flash)
        self.handshakes = []            # (context, server name, verified, error or None)
        self.power_on(time.monotonic())

    def power_on(self, now):
        """Everything a restart forgets: not attached yet, no bearer, SSL settings."""
        self._restart_attach(self.attach_after, now)
        self.radio = True               # AT+CFUN=1 (0 / 4: flight mode)
        self.detached = False           # AT+CGATT=0
        self.bearer_open = False
        self.bearer_ip = None
        self.pdp_lost = False           # the context went away (until the bearer reopens)
        busy = self.sim_busy or 0
        self._busy_polls = busy if isinstance(busy, int) else 0
        self.sim_ready_at = now + busy if isinstance(busy, float) else 0.0
        self.ssl = {}                   # AT+SSLCFG: context id -> {setting: value}

    def _restart_attach(self, down, now):
        if isinstance(down, float):
            self._attach_polls, self._attach_at = 0, now + down
        else:
            self._attach_polls, self._attach_at = int(down), 0.0

    def restart_attach(self, down):
        """Attach starts over: AT+CGATT? answers 0 for `down` polls (int) or seconds (float)."""
        self._restart_attach(down, time.monotonic())

    @property
    def attach_at(self):
        """When a timed attach completes (monotonic seconds; 0 for one counted in polls)."""
        return self._attach_at

    def poll_sim_busy(self):
        """AT+CPIN? once: is the SIM still busy (each poll counts one of the polls to wait)?"""
        if not self.sim:
            return False
        if self._busy_polls > 0:
            self._busy_polls -= 1
            return True
        return time.monotonic() < self.sim_ready_at

    @property
    def attached(self):
        if not self.sim or self.detached or not self.radio:
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

    # ----- TLS --------------------------------------------------------------------------
    def tls_settings(self, context):
        """The TLS client an SSL context makes now (the CPU thread takes it when a link or a
        request starts): (context, seclevel, CA PEM or None, server name override or None).
        TLSSetupError: verification is on but the CA file is missing or empty."""
        cfg = self.ssl.get(context, {})
        level = int(cfg.get("seclevel", 0) or 0)
        name = cfg.get("hostname") or None
        if level == 0:
            return (context, 0, None, name)
        path = cfg.get("cacert")
        if not path:
            raise TLSSetupError('context %d: seclevel %d without a "cacert" file' % (context, level))
        pem = self.files.get(path)
        if not pem:
            raise TLSSetupError("context %d: the CA file %r is %s" % (context, path, "empty" if pem is not None else "missing"))
        return (context, level, bytes(pem), name)

    def tls_wrap(self, settings, sock, host):
        """Handshake on a connected socket with the settings of tls_settings(); returns the
        TLS socket, or raises ssl.SSLError / OSError (recorded either way)."""
        context, level, pem, name = settings
        server = name or host
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if level == 0:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                ctx.load_verify_locations(cadata=pem.decode("latin-1"))
            except (ssl.SSLError, ValueError) as e:
                self.handshakes.append((context, server, True, "the CA file holds no certificate: %s" % e))
                raise ssl.SSLError("bad CA file") from e
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            tls = ctx.wrap_socket(sock, server_hostname=server)
        except ssl.SSLCertVerificationError as e:
            self.handshakes.append((context, server, level > 0, "certificate: %s" % (e.verify_message or e)))
            raise
        except (ssl.SSLError, OSError) as e:
            self.handshakes.append((context, server, level > 0, "handshake: %s" % e))
            raise
        self.handshakes.append((context, server, level > 0, None))
        return tls

    def tls_refused(self, context, host, error):
        """A TLS client that could not even be made (TLSSetupError): recorded as a handshake
        that failed before it began."""
        self.handshakes.append((context, host, True, str(error)))


def resolve(host):
    """Where a connection to `host` goes: "cloud" (the local cloud), "local" (127.0.0.1 at
    the port asked for) or None (a DNS failure)."""
    h = host.lower().rstrip(".")
    if h.endswith("aliyuncs.com"):
        return "cloud"
    if h in ("127.0.0.1", "localhost"):
        return "local"
    return None


def close_socket(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
