# End to end, issue 26: over-the-air updates with the real firmware on a board's "flash"
# (the work directory: boot.py then main.py under micropython, restarted when it resets),
# the virtual module's HTTP (ranged GETs: HTTPPARA BREAK / BREAKEND) and the local cloud's
# OTA service (a job from a package built by tools/ota_package.py, the package served with
# Range, the progress reports recorded): an update applied and reported; the link lost
# mid-download and a reset mid-download, both resumed from the staged bytes; a corrupted
# download refused with nothing replaced; a new firmware that never connects rolled back
# and its version refused afterwards.
import json
import os
import time

import pytest

from firmware import __version__
from firmware.aliyun import Topics
from tools.harness.env import DEMO, SimEnv
from tools.ota_package import build

PK, DN = DEMO["productKey"], DEMO["deviceName"]
T = Topics(PK, DN)
CHUNK = 2048  # firmware/ota.py CHUNK
BAD_MAIN = b"raise RuntimeError('bad firmware 9.0.0')\n"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("ota")
    good = build(str(d / "good.bin"), "1.3.0")[0]
    # the same firmware with a main.py that fails at once
    bad = build(str(d / "bad.bin"), "9.0.0", replace={"main.py": BAD_MAIN})[0]
    return {"good": good, "bad": bad}


def inform(env, version, timeout=60):
    return env.cloud.wait_uplink(lambda t, p: t == T.ota_inform and json.loads(p)["params"]["version"] == version,
                                 timeout, since=env.mark)


def progress(env):
    return env.cloud.ota_progress(PK, DN, since=env.mark)


def wait_progress(env, pred, timeout=90):
    env.cloud.wait_uplink(lambda t, p: t == T.ota_progress and pred(int(json.loads(p)["params"]["step"])),
                          timeout, since=env.mark)
    return progress(env)


def served(env, name):
    """The GETs of `name` answered since this run began (the cloud serves every test)."""
    return [s for s in env.cloud.ota_served()[env.served_mark:] if s["file"] == name]


def start(env):
    env.served_mark = len(env.cloud.ota_served())
    env.firmware.wait_log("link: mqtt -> up", timeout=60)


def flash(env, *path):
    return os.path.join(env.workdir, *path)


def ranges(rows):
    """(start, bytes) of each range served, from its Range header."""
    return [(int(r["range"].split("=")[1].split("-")[0]), r["bytes"]) for r in rows]


@pytest.mark.parametrize("personality", ["air724ug", "air780e"])  # the Air780 verifies the package's server
def test_update_applied_and_reported(cloud, packages, personality):
    with SimEnv(cloud=cloud, flash=True, boots=3, personality=personality) as env:
        fw = env.firmware
        start(env)
        inform(env, __version__)
        staged = cloud.ota_job(PK, DN, packages["good"])
        inform(env, "1.3.0", timeout=120)  # the new firmware runs, connected, and says so
        fw.wait_log("harness: board reset (exit 75)")  # firmware/update.py's reset
        steps = [s for s, _ in progress(env)]
        assert steps[-1] == 100 and steps == sorted(steps) and 0 < steps[0] < 100 and len(steps) >= 5
        rows = served(env, staged["name"])
        assert all(r["status"] == 206 for r in rows)
        got = ranges(rows)
        assert got[0][0] == 0 and sum(n for _, n in got) == staged["size"]  # every byte once
        assert [a for a, _ in got] == list(range(0, staged["size"], CHUNK))
        gets = [c for c in env.vm.commands if c.startswith("AT+HTTPPARA=")]
        assert gets[:3] == ['AT+HTTPPARA="URL","https://iotx-ota.oss-cn-shanghai.aliyuncs.com/ota/%s"' % staged["name"],
                            'AT+HTTPPARA="BREAK",0', 'AT+HTTPPARA="BREAKEND",%d' % (CHUNK - 1)]
        assert gets[-2:] == ['AT+HTTPPARA="BREAK",%d' % got[-1][0], 'AT+HTTPPARA="BREAKEND",0']
        # the flash: the new firmware whole (.mpy), the old kept, nothing staged
        names = sorted(os.listdir(flash(env, "firmware")))
        assert "__init__.mpy" in names and not any(n.endswith(".py") for n in names)
        assert os.path.exists(flash(env, "firmware.old", "__init__.py"))
        fw.wait_log(lambda line: "link: mqtt -> up" in line, since=fw.lines.index("harness: board reset (exit 75), boot 2"))
        for p in ("ota/state", "ota/pkg", "ota/job", "firmware.new"):
            assert not os.path.exists(flash(env, p)), p
        with open(flash(env, "firmware.old", "main.py")) as f, open(flash(env, "main.py")) as g:
            assert f.read() == g.read()  # the package's main.py is this tree's: the same text


def test_link_lost_and_reset_mid_download_resumed(cloud, packages):
    with SimEnv(cloud=cloud, flash=True, boots=3) as env:
        fw = env.firmware
        start(env)
        env.vm.schedule("pdp_loss", on_command="AT+HTTPACTION", nth=8)  # the 8th chunk's GET: 601
        staged = cloud.ota_job(PK, DN, packages["good"])
        fw.wait_log("ota: chunk failed (1 of 5)", timeout=60)
        # a reset (power cut) a few chunks after the link came back
        want = len(served(env, staged["name"])) + 4
        end = time.monotonic() + 60
        while len(served(env, staged["name"])) < want and time.monotonic() < end:
            time.sleep(0.05)
        fw.proc.kill()
        inform(env, "1.3.0", timeout=180)
        got = ranges(served(env, staged["name"]))
        starts = [a for a, _ in got]
        # never from 0 again: after the lost link and after the reset, from the staged bytes
        assert starts.count(0) == 1 and starts == sorted(starts)
        assert sum(n for _, n in got) <= staged["size"] + 2 * CHUNK  # at most the chunks cut in flight again
        assert all(r["status"] == 206 for r in served(env, staged["name"]))
        assert fw.resets >= 2  # the kill and the update's own reset
        assert [s for s, _ in progress(env)][-1] == 100


def test_corrupted_download_refused_nothing_replaced(cloud, packages):
    with SimEnv(cloud=cloud, flash=True, boots=1) as env:
        fw = env.firmware
        start(env)
        cloud.ota_job(PK, DN, packages["good"], tamper=True)
        steps = wait_progress(env, lambda s: s < 0 or s == 100)
        assert steps[-1] == (-3, "sha256 digest mismatch: the package is not the one the job names")
        for p in ("ota/state", "ota/pkg", "ota/job", "firmware.new", "firmware.old"):
            assert not os.path.exists(flash(env, p)), p
        assert fw.resets == 0 and os.path.exists(flash(env, "firmware", "__init__.py"))
        # the MD5 form of the job too
        mark = len(progress(env))
        cloud.ota_job(PK, DN, packages["good"], sign_method="MD5", tamper=True)
        steps = wait_progress(env, lambda s: s == -3 and len(progress(env)) > mark + 1)
        assert steps[-1] == (-3, "md5 digest mismatch: the package is not the one the job names")
        assert fw.resets == 0


def test_bad_firmware_rolled_back(cloud, packages):
    with SimEnv(cloud=cloud, flash=True, boots=4, cfg={"ota_boots": 2}) as env:
        fw = env.firmware
        start(env)
        cloud.ota_job(PK, DN, packages["bad"])
        fw.wait_log("bad firmware 9.0.0", timeout=120)  # the new main.py runs, and fails
        inform(env, __version__, timeout=120)
        rep = wait_progress(env, lambda s: s == -1)
        assert rep[-1] == (-1, "firmware 9.0.0 did not connect in 2 boots: back to %s" % __version__)
        assert sum("bad firmware 9.0.0" in line for line in fw.lines) == 2  # two boots, then the rollback
        assert os.path.exists(flash(env, "firmware", "__init__.py"))  # the old firmware whole again
        with open(flash(env, "main.py")) as f:
            assert "app.main()" in f.read()
        for p in ("ota/state", "firmware.bad", "firmware.old"):
            assert not os.path.exists(flash(env, p)), p
        # the same job again: refused, nothing downloaded
        cloud.ota_job(PK, DN, packages["bad"])
        rep = wait_progress(env, lambda s: s == -1 and "rolled back" in json.dumps(progress(env)[-1]))
        assert rep[-1] == (-1, "version 9.0.0 was rolled back on this device")


def test_console_ota_command(cloud, packages):
    """The console's `ota`: serves the package, pushes the job, prints the reports to 100."""
    import subprocess
    import sys

    from tools.proc import ROOT

    with SimEnv(cloud=cloud, flash=True, boots=2) as env:
        start(env)
        p = subprocess.run([sys.executable, "-m", "tools.cloud.console", "--state", cloud.state_dir, "ota", PK, DN,
                            packages["good"], "--sign-method", "MD5", "--wait", "120"],
                           capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert p.returncode == 0, p.stdout + p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith("job: version 1.3.0, ") and lines[0].endswith(", MD5, to %s/%s" % (PK, DN))
        assert lines[-1] == "progress 100 downloaded and verified: applying at the reset"
        assert all(line.startswith("progress ") for line in lines[1:])
        inform(env, "1.3.0", timeout=120)
