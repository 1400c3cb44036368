# firmware/port.py's copier and drop, on their own. Runs under CPython and MicroPython
# (where copier reads straight from the buffer's address: the path the AT engine uses).
import sys

from firmware.port import copier, drop


def test_copier_returns_independent_bytes_of_the_live_buffer():
    buf = bytearray(b"+MSUB: \"/a/b\",5 byte,hello\r\n")
    take = copier(buf)
    got = take(7, 13)
    assert got == b'"/a/b"' and type(got) is bytes
    assert take(0, 0) == b"" and take(len(buf) - 2, len(buf)) == b"\r\n"
    buf[9] = 0x58  # "X": the buffer is reused in place (never resized): the copier sees the new bytes...
    assert take(7, 13) == b'"/X/b"'
    assert got == b'"/a/b"'  # ...and what it handed out before is a copy, unchanged


def test_copier_of_a_full_buffer_reaches_its_last_byte():
    buf = bytearray(range(256))
    take = copier(buf)
    assert take(0, 256) == bytes(range(256))
    assert take(255, 256) == b"\xff"


def test_drop_forgets_the_module_and_it_imports_again():
    import firmware
    import firmware.config

    old = firmware.config
    drop("firmware.config")
    assert "firmware.config" not in sys.modules
    assert not hasattr(firmware, "config")  # the package's attribute is gone too: nothing keeps it
    import firmware.config as again

    assert again is not old and callable(again.load)
    assert sys.modules["firmware.config"] is again


def test_drop_of_a_module_not_loaded_is_a_no_op():
    before = sorted(sys.modules)
    drop("firmware.no_such_module")
    drop("no_such_package.no_such_module")
    assert sorted(sys.modules) == before
