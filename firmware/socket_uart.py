# A TCP connection used as a UART: the virtual module (tools/vmodule.py) or ser2net, for
# CPython and the MicroPython unix port. Same contract as machine.UART (firmware/uart.py):
# reads never block and return None when nothing has arrived.
from firmware.port import const

_CONNECT_S = const(5)  # a host that drops the SYN is reported after this, not after minutes
_RECONNECT_MS = const(1000)  # after the other end went away: connect again at most this often
_ANY = const(1 << 20)  # any() while input waits: more than a read asks for


def open_socket(url):
    """SocketUART for socket://host:port (config.json checked its syntax), or a UARTError:
    nothing listening there, a host that does not resolve or answer (worth retrying: the
    virtual module or ser2net may start later), or no socket module at all (a board)."""
    from firmware.errors import UARTError, reason

    try:
        import socket  # pyright: ignore[reportMissingImports]  (none on a plain Pico)
    except ImportError:
        raise UARTError("uart.url", "%s needs a network stack, which this board lacks: give the UART's "
                        "pins (\"id\", \"tx\", \"rx\") instead of a URL" % url)
    host, _, port = url[9:].rpartition(":")
    try:
        addr = socket.getaddrinfo(host, int(port))[0][-1]
    except OSError as e:
        raise UARTError("uart.url", "cannot resolve host %s (%s): check the name" % (host, reason(e)), retry=True)
    sock = socket.socket()
    try:
        sock.settimeout(_CONNECT_S)
        sock.connect(addr)
        return SocketUART(sock, addr)
    except OSError as e:
        sock.close()
        why = reason(e)
    if why == "ECONNREFUSED":
        why = "nothing listens at %s (ECONNREFUSED): start the virtual module or ser2net there, or fix host and port" % url
    else:
        why = "cannot connect to %s (%s): is the host up and the port open?" % (url, why)
    raise UARTError("uart.url", why, retry=True)


def _again(e):
    return e.args and e.args[0] in (11, 35, 115)  # EAGAIN / EWOULDBLOCK / EINPROGRESS


class SocketUART:
    """A TCP connection used as a UART (CPython and the MicroPython unix port). When the
    other end goes away (the virtual module or ser2net restarted), the call that notices
    raises OSError (the link recovers as from a dead UART, with its backoff) and a later
    call connects again, at most once every _RECONNECT_MS."""

    def __init__(self, sock, addr=None):
        self._addr = addr  # where to connect again; None: never
        self._tried = None
        self._use(sock)

    def _use(self, sock):
        sock.setblocking(False)
        self._sock = sock
        self._recv_into = getattr(sock, "recv_into", None) or sock.readinto
        self._poll = None
        self._rpoll = None

    def _lost(self, why):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        raise OSError("UART socket: %s" % why)

    def _connected(self):
        if self._sock is not None:
            return self._sock
        from firmware.port import ticks_diff, ticks_ms

        now = ticks_ms()
        if self._addr is None or (self._tried is not None and ticks_diff(now, self._tried) < _RECONNECT_MS):
            raise OSError("UART socket: closed by the module side (connecting again)")
        self._tried = now
        import socket  # pyright: ignore[reportMissingImports]

        sock = socket.socket()
        try:
            sock.settimeout(_CONNECT_S)
            sock.connect(self._addr)
        except OSError:
            sock.close()
            raise
        self._use(sock)
        return sock

    def readinto(self, buf, nbytes=None):
        self._connected()
        try:
            n = self._recv_into(buf if nbytes is None else memoryview(buf)[:nbytes])
        except OSError as e:
            if _again(e):
                return None
            n = e
        if n == 0 or isinstance(n, OSError):
            self._lost("closed by the module side" if n == 0 else _reason(n))
        return n or None

    def read(self, nbytes=256):
        buf = bytearray(nbytes)
        n = self.readinto(buf)
        return bytes(buf[:n]) if n else None

    def write(self, data):
        sock = self._connected()
        mv = memoryview(data)
        sent = 0
        while sent < len(mv):
            try:
                n = sock.send(mv[sent:])
            except OSError as e:
                if not _again(e):
                    self._lost(_reason(e))
                n = 0
            if n:
                sent += n
            else:
                self._wait_writable()
        return sent

    def _wait_writable(self):
        import select

        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLOUT)
        self._poll.poll(10)

    def wait(self, ms):
        """Block until input arrives or `ms` pass (the AT engine's idle wait)."""
        if self._sock is None:  # lost: the next read connects again (or says why not)
            return [1]
        if self._rpoll is None:
            import select

            self._rpoll = select.poll()
            self._rpoll.register(self._sock, select.POLLIN)
        return self._rpoll.poll(ms)

    def any(self):
        """0 when nothing waits, else as many bytes as any read asks for: a socket cannot
        count what is queued, and its non-blocking read never waits for more than is there
        (the AT engine reads at most what any() says: firmware/at.py _ready)."""
        return _ANY if self.wait(0) else 0

    def close(self):
        self._addr = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _reason(e):
    from firmware.errors import reason

    return reason(e)
