# The board tier of issue 26: one over-the-air update for real on the emulated Raspberry Pi
# Pico's flash (tools/board/, the rp2 port of MicroPython v1.28.0): `make deploy` puts the
# firmware on it, the local cloud pushes a job for a package of this tree as 1.3.0, the
# board downloads it through its UART and the virtual module's ranged GETs, resets itself
# (machine.reset()), boot.py applies it, and the new firmware connects and reports 1.3.0;
# then its flash is read: the new .mpy files in firmware/, the old ones in firmware.old/,
# nothing staged. Without the emulator kit the module skips, saying in one line what is missing.
import json

import pytest

from tools.board import kit

try:
    KIT = kit.find(images=("v1.28.0",))
except kit.KitMissing as e:
    pytest.skip(str(e), allow_module_level=True)

from firmware import __version__  # noqa: E402
from firmware.aliyun import Topics  # noqa: E402
from tools.board.env import BoardEnv  # noqa: E402
from tools.ota_package import build  # noqa: E402

BOOT_S = 300  # wall seconds for main.py to bring the link up (the emulator is 6-8x slower)
CFG = {"wdt_ms": 0, "backoff_min_ms": 500, "backoff_max_ms": 4000, "interval": 5}


def test_update_on_the_pico_flash(tmp_path):
    package = build(str(tmp_path / "ota.bin"), "1.3.0")[0]
    with BoardEnv(KIT, "v1.28.0", cfg=CFG) as b:
        con = b.console
        pk, dn = b.device["productKey"], b.device["deviceName"]
        t = Topics(pk, dn)
        con.wait_log("link: mqtt -> up", timeout=BOOT_S)
        mark = b.world.mark

        def inform(version, timeout):
            return b.cloud.wait_uplink(lambda tp, p: tp == t.ota_inform and json.loads(p)["params"]["version"] == version,
                                       timeout, since=mark)
        inform(__version__, 120)
        staged = b.cloud.ota_job(pk, dn, package)
        inform("1.3.0", 1500)
        steps = [s for s, _ in b.cloud.ota_progress(pk, dn, since=mark)]
        assert steps[-1] == 100 and steps == sorted(steps), steps
        assert b.pico.resets() == ["force: machine.reset()", "force: machine.reset()"]  # deploy's, the update's
        gets = [g for g in b.cloud.ota_served() if g["file"] == staged["name"]]
        assert sum(g["bytes"] for g in gets) == staged["size"] and all(g["status"] == 206 for g in gets)
        out = con.text()
        assert "Traceback" not in out and "MemoryError" not in out, out[-3000:]
        # the flash, read on the board (its reset ended the old REPL connection: a new one)
        con.stop()
        con = b.console = b.pico.repl()
        m = con.mark()
        con.interrupt()
        con.wait_log("stopped.", since=m, timeout=60)
        con.raw()
        listing = con.exec("import os; print(sorted(os.listdir('firmware'))); print(sorted(os.listdir('firmware.old')));"
                           " print(sorted(os.listdir('ota')))")
        new, old, ota = [eval(line) for line in listing.strip().splitlines()[-3:]]
        assert "__init__.mpy" in new and "ota.mpy" in new and "aliyun-ca.pem" in new
        # deploy's files kept for a rollback, and the old top files beside them
        assert set(new) <= set(old) and sorted(set(old) - set(new)) == ["boot.py", "main.py"]
        assert ota == []  # the package, the job and the marker gone
        version = con.exec("import firmware; print(firmware.__version__)")
        assert version.strip().splitlines()[-1] == "1.3.0"
