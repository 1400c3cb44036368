# A pyserial port as a UART (CPython only): a real module on a USB-serial adapter, or any
# pyserial URL. Kept out of firmware/uart.py so boards never load it.

_RETRY = ("ENOENT", "ENODEV", "ENXIO", "EBUSY", "EIO")  # unplugged, busy: may pass by itself


def open_serial(url, baud, flow=False):
    """SerialUART for a serial device or pyserial URL, or a UARTError naming uart.url: no
    pyserial (not worth retrying), the device missing or busy (retried: the adapter may be
    plugged in later), no permission (a group the user must join, then log in again)."""
    from firmware.errors import UARTError, reason

    try:
        import serial  # type: ignore
    except ImportError:  # MicroPython, or CPython without it
        raise UARTError("uart.url", "%s is a serial device, which needs pyserial on CPython (pip install pyserial); "
                        "MicroPython has no serial support: use socket:// with ser2net" % url)
    why = None
    try:
        return SerialUART(serial.serial_for_url(url, baudrate=baud, timeout=0, rtscts=flow))
    except ValueError as e:  # a URL pyserial does not know, a baud rate it refuses
        why = "pyserial refused it: %s" % reason(e)
    except OSError as e:  # serial.SerialException is an OSError; errno from the open()
        n = reason(OSError(e.errno)) if isinstance(getattr(e, "errno", None), int) else reason(e)
        if n == "EACCES":
            why = ("cannot open %s: permission denied: add yourself to its group (sudo usermod -aG dialout "
                   "$USER), then log in again" % url)
        elif n in _RETRY:
            raise UARTError("uart.url", "cannot open %s (%s): is the USB-serial adapter plugged in, and not open "
                            "in another program? (ls /dev/ttyUSB* /dev/ttyACM*)" % (url, n), retry=True)
        else:
            why = "cannot open %s (%s): is it a serial device?" % (url, n)
    raise UARTError("uart.url", why)


class SerialUART:
    """pyserial (CPython only): a real module on a USB-serial adapter, or any pyserial URL."""

    def __init__(self, ser):
        self._ser = ser

    def readinto(self, buf, nbytes=None):
        n = self._ser.in_waiting
        if not n:
            return None
        data = self._ser.read(min(n, len(buf) if nbytes is None else nbytes))
        buf[: len(data)] = data
        return len(data) or None

    def read(self, nbytes=256):
        return self._ser.read(nbytes) or None

    def write(self, data):
        return self._ser.write(data)

    def any(self):
        return self._ser.in_waiting

    def close(self):
        self._ser.close()
