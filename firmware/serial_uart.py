# A pyserial port as a UART (CPython only): a real module on a USB-serial adapter, or any
# pyserial URL. Kept out of firmware/uart.py so boards never load it.


class SerialUART:
    """pyserial (CPython only): a real module on a USB-serial adapter, or any pyserial URL."""

    def __init__(self, url, baud):
        import serial  # type: ignore

        self._ser = serial.serial_for_url(url, baudrate=baud, timeout=0)

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
