# The UART seam. Anything with read(n), readinto(buf), write(b) and any() is a UART:
#   {"id": 1, "tx": 17, "rx": 16, "baud": 115200, "rxbuf": 4096}  machine.UART on a board
#   {... , "flow": true, "rts": 7, "cts": 6}  with RTS/CTS hardware flow control
#   {"url": "socket://127.0.0.1:7000"}    a TCP socket: the virtual module, or ser2net
#   {"url": "/dev/ttyUSB0", "baud": 115200} pyserial, a real module on a USB cable (CPython)
# Reads never block: they return None when nothing has arrived, as machine.UART does.
# The socket and pyserial adapters live in their own files, loaded only when a URL names them:
# a board holds none of their code.
# A UART that cannot be opened is one UARTError: a line naming the config field and what to
# check, and whether trying again can help (.retry: nothing listens at the URL yet, the USB
# adapter is unplugged) or cannot (a pin this board's UART does not take, no pyserial).
from firmware.errors import UARTError, reason
from firmware.port import const

_RXBUF = const(4096)  # the boards' 256-byte default overflows under a burst of downlinks


def open_uart(cfg):
    url = cfg.get("url")
    if url:
        if url.startswith("socket://"):
            from firmware.socket_uart import open_socket  # PCs and the unix port only

            return open_socket(url)
        from firmware.serial_uart import open_serial  # CPython with pyserial only

        return open_serial(url, cfg.get("baud", 115200), bool(cfg.get("flow")))
    try:
        import machine  # pyright: ignore[reportMissingImports]

        pin, uart = machine.Pin, machine.UART
    except (ImportError, AttributeError):  # CPython, or the unix port's machine (no UART)
        raise UARTError("uart", "a board's UART (id, tx, rx), but this is not a board: on a PC give "
                        "\"url\": \"socket://127.0.0.1:7000\" (the virtual module) or a serial device")
    kw = {
        "baudrate": cfg.get("baud", 115200),
        "tx": pin(cfg["tx"]),
        "rx": pin(cfg["rx"]),
        "rxbuf": cfg.get("rxbuf", _RXBUF),
        "timeout": 0,
        "timeout_char": 0,
    }
    if cfg.get("flow"):  # RTS/CTS: the module stops sending while our FIFO is full, and we while its is
        kw["flow"] = uart.RTS | uart.CTS
        for f in ("rts", "cts"):
            if f in cfg:  # else the port's default pins (rp2: UART0 GP3/GP2, UART1 GP7/GP6)
                kw[f] = pin(cfg[f])
    why = None
    try:
        return uart(cfg.get("id", 1), **kw)
    except (ValueError, TypeError, OSError) as e:  # "bad TX pin", "UART(2) doesn't exist"
        why = "%s (uart id %s, tx %s, rx %s%s)" % (reason(e), cfg.get("id", 1), cfg["tx"], cfg["rx"],
                                                  ", flow" if cfg.get("flow") else "")
    raise UARTError("uart", "machine.UART refused it: %s: check which pins this board's UART takes "
                    "(its pinout names them)" % why)
