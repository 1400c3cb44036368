# The UART seam. Anything with read(n), readinto(buf), write(b) and any() is a UART:
#   {"id": 1, "tx": 17, "rx": 16, "baud": 115200, "rxbuf": 4096}  machine.UART on a board
#   {"url": "socket://127.0.0.1:7000"}    a TCP socket: the virtual module, or ser2net
#   {"url": "/dev/ttyUSB0", "baud": 115200} pyserial, a real module on a USB cable (CPython)
# Reads never block: they return None when nothing has arrived, as machine.UART does.
# The socket and pyserial adapters live in their own files, loaded only when a URL names them:
# a board holds none of their code.
from firmware.port import const

_RXBUF = const(4096)  # the boards' 256-byte default overflows under a burst of downlinks


def open_uart(cfg):
    url = cfg.get("url")
    if url:
        if url.startswith("socket://"):
            from firmware.socket_uart import SocketUART  # PCs and the unix port only

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
