# A TCP connection used as a UART: the virtual module (tools/vmodule.py) or ser2net, for
# CPython and the MicroPython unix port. Same contract as machine.UART (firmware/uart.py):
# reads never block and return None when nothing has arrived.


_CONNECT_S = 5  # a host that drops the SYN is reported after this, not after minutes


def open_socket(url):
    """SocketUART for socket://host:port (config.json checked its syntax), or a UARTError:
    nothing listening there, a host that does not resolve or answer (worth retrying: the
    virtual module or ser2net may start later), or no socket module at all (a board)."""
    from firmware.uart import UARTError, reason

    try:
        import socket  # pyright: ignore[reportMissingImports]  (none on a plain Pico)
    except ImportError:
        raise UARTError("uart.url", "%s needs a network stack, which this board lacks: give the UART's "
                        "pins (\"id\", \"tx\", \"rx\") instead of a URL" % url)
    host, _, port = url[9:].rpartition(":")
    why = None
    try:
        addr = socket.getaddrinfo(host, int(port))[0][-1]
    except OSError as e:
        why = "cannot resolve host %s (%s): check the name" % (host, reason(e))
    if why is None:
        sock = socket.socket()
        try:
            sock.settimeout(_CONNECT_S)
            sock.connect(addr)
            return SocketUART(sock)
        except OSError as e:
            sock.close()
            n = reason(e)
            if n == "ECONNREFUSED":
                why = ("nothing listens at %s (ECONNREFUSED): start the virtual module there "
                       "(python3 tools/vmodule.py --port %s) or ser2net, or fix host and port" % (url, port))
            else:
                why = "cannot connect to %s (%s): is the host up and the port open?" % (url, n)
    raise UARTError("uart.url", why, retry=True)


def _again(e):
    return e.args and e.args[0] in (11, 35, 115)  # EAGAIN / EWOULDBLOCK / EINPROGRESS


class SocketUART:
    """A TCP connection used as a UART (CPython and the MicroPython unix port)."""

    def __init__(self, sock):
        self._sock = sock
        self._sock.setblocking(False)
        self._recv_into = getattr(self._sock, "recv_into", None) or self._sock.readinto
        self._poll = None
        self._rpoll = None

    def readinto(self, buf, nbytes=None):
        try:
            n = self._recv_into(buf if nbytes is None else memoryview(buf)[:nbytes])
        except OSError as e:
            if _again(e):
                return None
            raise
        if n == 0:
            raise OSError("UART socket closed by the module side")
        return n or None

    def read(self, nbytes=256):
        buf = bytearray(nbytes)
        n = self.readinto(buf)
        return bytes(buf[:n]) if n else None

    def write(self, data):
        mv = memoryview(data)
        sent = 0
        while sent < len(mv):
            try:
                n = self._sock.send(mv[sent:])
            except OSError as e:
                if not _again(e):
                    raise
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
        if self._rpoll is None:
            import select

            self._rpoll = select.poll()
            self._rpoll.register(self._sock, select.POLLIN)
        return self._rpoll.poll(ms)

    def any(self):
        return 1 if self.wait(0) else 0

    def close(self):
        self._sock.close()
