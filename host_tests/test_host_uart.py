# CPython-side behaviour of config.json and the UART: `micropython main.py` (and
# `python main.py`) exit 1 on a config or UART that cannot work, with one line naming the
# field and no secret; a socket:// URL where nothing listens is retried until something does;
# pyserial devices (missing, RTS/CTS); tools/host.py's exit statuses.
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from tools.proc import ROOT, micropython_bin, stop

SECRET = "y7MTCG6Gk33Ux26bbWSpANI4Oal0bg5Q"
BASE = {"product_key": "b0FMK1Ga5cp", "device_name": "862991419835241", "device_secret": SECRET,
        "backoff_min_ms": 10, "backoff_max_ms": 50}


def interpreters():
    return [("micropython", micropython_bin()), ("cpython", sys.executable)]


def run_main(interp, workdir, timeout=60):
    env = dict(os.environ, MICROPYPATH=ROOT, PYTHONPATH=ROOT)
    return subprocess.run([interp, os.path.join(ROOT, "main.py")], cwd=str(workdir), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def write_config(workdir, cfg=None, raw=None):
    with open(os.path.join(str(workdir), "config.json"), "wb") as f:
        f.write(raw if raw is not None else json.dumps(dict(BASE, **(cfg or {}))).encode())


@pytest.mark.parametrize("name,interp", interpreters())
@pytest.mark.parametrize("cfg,raw,field", [
    ({"uart": {"url": "socket://127.0.0.1:7000", "baud": 115201}}, None, "uart.baud"),
    ({"interval": 864000, "uart": {"url": "socket://127.0.0.1:7000"}}, None, "interval"),
    ({"device_name": SECRET + "!", "uart": {"url": "socket://127.0.0.1:7000"}}, None, "device_name"),
    (None, b'{"device_secret": "' + SECRET.encode() + b'", "apn": "\xe9"}', "config.json: not UTF-8"),
    (None, b'{"device_secret": "' + SECRET.encode() + b'" "apn": "x"}', "config.json: not valid JSON"),
    ({"uart": {"id": 1, "tx": 17, "rx": 16}}, None, "uart: a board's UART"),  # config fine, no board here
])
def test_main_exits_1_with_one_line_naming_the_field(tmp_path, name, interp, cfg, raw, field):
    write_config(tmp_path, cfg, raw)
    proc = run_main(interp, tmp_path)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 1, out
    errors = [line for line in out.splitlines() if " E app: " in line]
    assert len(errors) == 1 and field in errors[0], out
    assert SECRET not in out and "Traceback" not in out, out


def test_micropython_main_retries_a_url_until_something_listens(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
    port = srv.getsockname()[1]
    write_config(tmp_path, {"uart": {"url": "socket://127.0.0.1:%d" % port}, "backoff_max_ms": 200})
    env = dict(os.environ, MICROPYPATH=ROOT)
    proc = subprocess.Popen([micropython_bin(), os.path.join(ROOT, "main.py")], cwd=str(tmp_path), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    refused = threading.Event()

    def read():
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace"))
            if sum("E app: uart.url: nothing listens" in line for line in lines) >= 2:
                refused.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert refused.wait(60), "".join(lines)  # refused twice, and still running
        assert proc.poll() is None
        srv.listen(1)
        srv.settimeout(60)
        conn, _ = srv.accept()
        conn.settimeout(60)
        assert conn.recv(3) == b"AT\r"  # the firmware's first command: it opened the UART
        conn.close()
    finally:
        stop(proc)
        srv.close()


def test_serial_device_missing_is_retried_and_rts_cts_reach_pyserial():
    from firmware.uart import UARTError, open_uart

    with pytest.raises(UARTError) as e:
        open_uart({"url": "/dev/ttyNOSUCH9"})
    assert e.value.field == "uart.url" and e.value.retry and "/dev/ttyNOSUCH9" in str(e.value)
    with pytest.raises(UARTError) as e:
        open_uart({"url": "nosuch://x"})  # a URL pyserial does not know: not retried
    assert e.value.field == "uart.url" and not e.value.retry
    u = open_uart({"url": "loop://", "baud": 921600, "flow": True})
    try:
        assert u._ser.rtscts is True and u._ser.baudrate == 921600
        u.write(b"AT\r")
        buf = bytearray(8)
        assert u.readinto(buf) == 3 and bytes(buf[:3]) == b"AT\r"
    finally:
        u.close()
    u = open_uart({"url": "loop://"})
    assert u._ser.rtscts is False
    u.close()


def test_host_py_exit_statuses(tmp_path, capsys):
    from firmware import app
    from tools import host

    app.current = None  # diag (--at) prefers a running App's modem: an earlier test's must not count

    path = str(tmp_path / "config.json")
    write_config(tmp_path, {"uart": {"id": 1, "tx": 17, "rx": 16}})
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    url = "socket://127.0.0.1:%d" % srv.getsockname()[1]
    try:
        assert host.main(["--config", path, "--url", url, "--baud", "115201"]) == 2
        assert "uart.baud" in capsys.readouterr().err
        assert host.main(["--config", path, "--url", "127.0.0.1:7000"]) == 2
        assert 'did you mean "socket://127.0.0.1:7000"' in capsys.readouterr().err
        assert host.main(["--config", path, "--url", url, "--seconds", "0.3"]) == 1  # retried, never opened
        assert host.main(["--config", path, "--url", url, "--at", "AT"]) == 1
        assert "uart.url: nothing listens" in capsys.readouterr().err
    finally:
        srv.close()
