# Opening config.json's "uart": machine.UART with RTS/CTS when "flow" is true, a socket://
# URL, and one UARTError naming the field when it cannot open, saying whether trying again
# can help (nothing listens yet) or not (a pin the board's UART refuses, no pyserial).
# Both interpreters (a fake machine module stands in for a board's).
import sys

from fwtest import raises
from test_fw_config import FakeMachine

from firmware.uart import UARTError, open_uart

MICROPYTHON = sys.implementation.name == "micropython"


def bound_port():
    """(socket bound to 127.0.0.1 but not listening, its port): connecting is refused until
    the test calls listen(). The unix port's sockets have no getsockname(): try ports."""
    import socket

    s = socket.socket()
    if hasattr(s, "getsockname"):
        s.bind(("127.0.0.1", 0))
        return s, s.getsockname()[1]
    import random

    for _ in range(200):
        port = 20000 + random.getrandbits(14)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return s, port
        except OSError:
            pass
    raise AssertionError("no free port")


def with_machine(fn):
    saved = sys.modules.get("machine")
    sys.modules["machine"] = FakeMachine
    FakeMachine.UART.made = []
    try:
        return fn()
    finally:
        if saved is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = saved


def test_nothing_listening_is_one_error_worth_retrying():
    s, port = bound_port()
    try:
        url = "socket://127.0.0.1:%d" % port
        e = raises(UARTError, open_uart, {"url": url})
        assert e.field == "uart.url" and e.retry is True
        assert str(e).startswith("uart.url: ") and url in str(e) and "ECONNREFUSED" in str(e)
    finally:
        s.close()


def test_a_socket_uart_carries_bytes_both_ways_once_something_listens():
    s, port = bound_port()
    s.listen(1)
    u = conn = None
    try:
        u = open_uart({"url": "socket://127.0.0.1:%d" % port})
        conn = s.accept()[0]
        u.write(b"AT\r")
        got = b""
        while len(got) < 3:
            got += conn.recv(16)
        assert got == b"AT\r"
        assert u.any() == 0  # nothing waits: the AT engine reads nothing (firmware/at.py _ready)
        conn.send(b"\r\nOK\r\n")
        buf = bytearray(16)
        n = 0
        while n < 6:
            u.wait(100)
            if not n and u.any():  # a socket cannot count: any() allows any read while input waits
                assert u.any() >= 1 << 16
            n += u.readinto(memoryview(buf)[n:]) or 0
        assert bytes(buf[:n]) == b"\r\nOK\r\n"
    finally:
        for x in (u, conn, s):
            if x is not None:
                x.close()


def test_flow_true_turns_on_rts_cts_on_machine_uart():
    def run():
        open_uart({"id": 1, "tx": 4, "rx": 5, "baud": 921600, "flow": True, "rts": 7, "cts": 6})
        open_uart({"id": 0, "tx": 0, "rx": 1, "flow": True})  # the port's default RTS/CTS pins
        open_uart({"id": 1, "tx": 4, "rx": 5, "rxbuf": 8192})
        return FakeMachine.UART.made

    (i1, k1), (i2, k2), (i3, k3) = with_machine(run)
    assert i1 == 1 and k1["flow"] == FakeMachine.UART.RTS | FakeMachine.UART.CTS
    assert (k1["rts"].n, k1["cts"].n, k1["tx"].n, k1["rx"].n) == (7, 6, 4, 5)
    assert k1["baudrate"] == 921600 and k1["rxbuf"] == 4096 and k1["timeout"] == 0
    assert i2 == 0 and k2["flow"] == 3 and "rts" not in k2 and "cts" not in k2
    assert "flow" not in k3 and k3["rxbuf"] == 8192 and k3["baudrate"] == 115200


def test_a_uart_the_board_refuses_is_one_error_not_retried():
    def run():
        return raises(UARTError, open_uart, {"id": 1, "tx": 17, "rx": 16})  # the fake takes tx % 4 == 0

    e = with_machine(run)
    assert e.field == "uart" and e.retry is False and "bad TX pin" in str(e)


def test_board_pins_on_a_pc_are_one_error_not_retried():
    e = raises(UARTError, open_uart, {"id": 1, "tx": 17, "rx": 16})  # CPython, or the unix port's machine
    assert e.field == "uart" and e.retry is False and "socket://" in str(e)


def test_a_serial_device_without_pyserial_is_one_error_not_retried():
    saved = sys.modules.get("serial")
    if not MICROPYTHON:  # MicroPython has no pyserial at all
        sys.modules["serial"] = None
    try:
        e = raises(UARTError, open_uart, {"url": "/dev/ttyUSB0"})
    finally:
        if not MICROPYTHON:
            if saved is None:
                del sys.modules["serial"]
            else:
                sys.modules["serial"] = saved
    assert e.field == "uart.url" and e.retry is False and "pyserial" in str(e)


def test_a_socket_uart_connects_again_after_the_other_end_went_away():
    s, port = bound_port()
    s.listen(2)
    u = conn = None
    try:
        u = open_uart({"url": "socket://127.0.0.1:%d" % port})
        conn = s.accept()[0]
        conn.close()  # the virtual module restarts
        buf = bytearray(8)
        e = raises(OSError, lambda: [u.wait(100) and u.readinto(buf) for _ in range(50)])
        assert "closed by the module side" in str(e)
        u.write(b"AT\r")  # the next call connects again
        conn = s.accept()[0]
        got = b""
        while len(got) < 3:
            got += conn.recv(16)
        assert got == b"AT\r"
    finally:
        for x in (u, conn, s):
            if x is not None:
                x.close()
