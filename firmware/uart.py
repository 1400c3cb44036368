# The UART seam. Anything with read(n), readinto(buf), write(b) and any() is a UART:
#   {"id": 1, "tx": 17, "rx": 16, "baud": 115200, "rxbuf": 4096}  machine.UART on a board
#   {"url": "socket://127.0.0.1:7000"}    a TCP socket: the virtual module, or ser2net
#   {"url": "/dev/ttyUSB0", "baud": 115200} pyserial, a real module on a USB cable (CPython)
# Reads never block: they return None when nothing has arrived, as machine.UART does.
from firmware.port import const

_RXBUF = const(4096)  # the boards' 256-byte default overflows under a burst of downlinks


def open_uart(cfg):
    url = cfg.get("url")
    if url:
        if url.startswith("socket://"):
            host, _, port = url[9:].rpartition(":")
            return SocketUART(host, int(port))
        from firmware.serial_uart import SerialUART  # CPython with pyserial only

        return SerialUART(url, cfg.get("baud", 115200))
    import machine

    return machine.UART(
        cfg.get("id", 1),
        baudrate=cfg.get("baud", 115200),
        tx=machine.Pin(cfg["tx"]),
        rx=machine.Pin(cfg["rx"]),
        rxbuf=cfg.get("rxbuf", _RXBUF),
        timeout=0,
        timeout_char=0,
    )


def _again(e):
    return e.args and e.args[0] in (11, 35, 115)  # EAGAIN / EWOULDBLOCK / EINPROGRESS


class SocketUART:
    """A TCP connection used as a UART (CPython and the MicroPython unix port)."""

    def __init__(self, host, port):
        import socket  # pyright: ignore[reportMissingImports]  (none on a plain Pico: socket:// URLs only)

        self._sock = socket.socket()
        self._sock.connect(socket.getaddrinfo(host, port)[0][-1])
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
