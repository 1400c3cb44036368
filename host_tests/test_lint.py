# The type check of `make lint` has teeth: with a board's MicroPython stubs as the standard
# library (as the Makefile sets it up in .venv/stubs/<board>/), code that uses CPython-only
# modules or functions fails, board APIs pass, and each board sees only its own modules.
# `make test` runs `make lint` first, which installs the stubs.
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, ".venv", "stubs")
PYRIGHT = os.path.join(os.path.dirname(sys.executable), "pyright")

CODE = """\
import time
import hmac
import esp32
from machine import UART, Pin

t = time.ticks_diff(time.ticks_ms(), 0)
u = UART(1, baudrate=115200, tx=Pin(17), rx=Pin(16), rxbuf=4096, timeout=0)
n = u.readinto(bytearray(8))
m = time.monotonic()
"""


def errors(board, tmp_path):
    stubs = os.path.join(STUBS, board)
    if not os.path.isdir(stubs):
        pytest.fail("no %s: run `make lint` (make test does) to install the stubs" % stubs)
    (tmp_path / "probe.py").write_text(CODE)
    (tmp_path / "pyrightconfig.json").write_text(json.dumps({
        "include": ["probe.py"], "stubPath": stubs, "typeshedPath": stubs,
        "typeCheckingMode": "standard", "reportMissingModuleSource": False, "pythonVersion": "3.8",
    }))
    p = subprocess.run([PYRIGHT, "--outputjson", "--pythonpath", shutil.which("false"), "-p", str(tmp_path / "pyrightconfig.json")],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                       env=dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1"))
    report = json.loads(p.stdout)
    return {(d["range"]["start"]["line"] + 1, d.get("rule")) for d in report["generalDiagnostics"]
            if d["severity"] == "error"}


@pytest.mark.parametrize("board", ["esp32", "rp2"])
def test_stubs_catch_cpython_only_code(board, tmp_path):
    errs = errors(board, tmp_path)
    assert (2, "reportMissingImports") in errs, errs  # no hmac on any board
    assert (9, "reportAttributeAccessIssue") in errs, errs  # no time.monotonic on any board
    # esp32 exists only on the ESP32
    assert ((3, "reportMissingImports") in errs) == (board == "rp2"), errs
    # ticks_*, machine.UART with rxbuf/timeout and readinto are fine on both
    assert not [e for e in errs if e[0] in (1, 4, 6, 7, 8)], errs
