# `make deploy` for real, against the virtual board (tools/harness/vboard.py: the unix port behind a
# socat pty, driven by mpremote exactly like a board on a USB cable): the files that land in
# its flash, the .mpy (not a .py) that `import firmware.at` loads there, and then the deployed
# firmware itself, run on the virtual board against the virtual Air724 module and the local
# cloud until the link is up and the cloud has its first uplink.
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from tools.harness.vboard import VirtualBoard
from tools.proc import ROOT, which
from tools.proc import stop as stop_process

MPREMOTE = which("mpremote") or "mpremote"
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py"))
SECRET = "DemoDeviceSecret0000000000000001"


def test_vboard_fails_clearly_without_socat(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="socat not found.*make sysdeps"):
        VirtualBoard().start()


def mpremote(port, *words, timeout=60):
    p = subprocess.run([MPREMOTE, "connect", port, "resume"] + list(words),
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def deploy(port, config):
    p = subprocess.run(["make", "-s", "deploy", "PORT=" + port, "MPREMOTE_OPTS=resume", "CONFIG=" + config],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.fixture
def world():
    """Local cloud + virtual module (tools/harness/env.py) + virtual board, all stopped afterwards."""
    from tools.harness.env import DEMO, SimEnv

    with SimEnv(start_firmware=False) as env:
        vb = VirtualBoard().start()
        try:
            yield env.cloud, env.vm, vb, DEMO
        finally:
            vb.stop()


def test_deploy_to_virtual_board_then_run_to_link_up(world, tmp_path):
    cloud, vm, vb, dev = world
    cfg = {
        "product_key": dev["productKey"], "device_name": dev["deviceName"], "device_secret": dev["deviceSecret"],
        "auth": "mqtt", "tls": True, "keepalive": 60, "interval": 1, "uart": {"url": vm.url},
    }
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))

    # a stale source file on the board would shadow the new .mpy: deploy must remove it
    os.makedirs(os.path.join(vb.flash, "firmware"))
    with open(os.path.join(vb.flash, "firmware", "at.py"), "w") as f:
        f.write("raise ImportError('stale source imported')\n")

    out = deploy(vb.port, str(config))
    assert "deployed %d modules, config" % len(MODULES) in out, out

    flash = vb.flash
    assert sorted(os.listdir(flash)) == ["boot.py", "config.json", "firmware", "main.py"]
    assert sorted(os.listdir(os.path.join(flash, "firmware"))) == sorted(m + ".mpy" for m in MODULES)
    for name in ("boot.py", "main.py"):
        with open(os.path.join(flash, name)) as a, open(os.path.join(ROOT, name)) as b:
            assert a.read() == b.read(), name
    with open(os.path.join(flash, "config.json")) as f:
        assert json.load(f) == cfg
    with open(os.path.join(flash, "firmware", "at.mpy"), "rb") as f:
        assert f.read(2) == b"M\x06"  # .mpy v6

    # the board imports the compiled module from its own flash
    got = mpremote(vb.port, "exec", "import firmware.at, sys; print(firmware.at.__file__, sys.path)")
    assert got.split()[0] == "firmware/at.mpy", got

    # run the deployed firmware on the virtual board until the link is up
    proc = subprocess.Popen([MPREMOTE, "connect", vb.port, "resume", "exec", "import main"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    up = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "link: mqtt -> up" in line:
                up.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        assert up.wait(60), "no 'link: mqtt -> up' within 60 s:\n" + "\n".join(lines[-40:])
        topic = "/%s/%s/user/update" % (dev["productKey"], dev["deviceName"])
        tp, payload, qos = cloud.wait_uplink(lambda t_, p: t_ == topic, timeout=30)
        assert json.loads(payload)["seq"] >= 1 and qos == 1
    finally:
        stop_process(proc)
        t.join(5)
    log = "\n".join(lines)
    assert "Traceback" not in log, log
    assert SECRET not in log
    assert any(c.startswith("AT+SSLMIPSTART") for c in vm.commands)


def test_package_json_installs_the_firmware_with_mip():
    """package.json lists every module by a URL relative to itself, so
    `mpremote mip install github:OWNER/REPO` works for any fork; proven here with the same
    mip code reading the local package.json into the virtual board."""
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    import firmware
    assert pkg["version"] == firmware.__version__
    assert sorted(dst for dst, src in pkg["urls"]) == sorted("firmware/%s.py" % m for m in MODULES), \
        "package.json does not list every firmware module: run `make package`"
    assert all(src == dst for dst, src in pkg["urls"])
    with VirtualBoard() as vb:
        mpremote(vb.port, "mip", "install", "--target", ".", os.path.join(ROOT, "package.json"))
        assert sorted(os.listdir(os.path.join(vb.flash, "firmware"))) == sorted(m + ".py" for m in MODULES)
        got = mpremote(vb.port, "exec", "import firmware.diag as d; print(d.dbm(20), d.__file__)")
        assert got.split() == ["-73", "firmware/diag.py"], got


# ------------------------------------------------------------------ host mode (tools/host.py)
@pytest.fixture
def cloud_and_module(tmp_path):
    from tools.harness.env import DEMO, SimEnv

    with SimEnv(start_firmware=False) as env:
        cfg = {"product_key": DEMO["productKey"], "device_name": DEMO["deviceName"],
               "device_secret": DEMO["deviceSecret"], "keepalive": 60, "interval": 1,
               "uart": {"id": 1, "tx": 17, "rx": 16}}  # a board's pins: --url replaces them
        path = tmp_path / "config.json"
        path.write_text(json.dumps(cfg))
        yield env.cloud, env.vm, str(path), DEMO


def host(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "tools.host"] + list(args), cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def test_host_mode_diag_over_a_socket_url(cloud_and_module):
    cloud, vm, config, dev = cloud_and_module
    code, out = host("--url", vm.url, "--config", config, "--diag")
    assert code == 0, out
    assert "IMEI       866714043075174" in out and "ICCID      89860425102180123456" in out, out
    assert "rssi 20 = -73 dBm (excellent)" in out and "device_secret ****" in out, out
    assert "PASS 8. MQTT connect with the configured device" in out and "all 8 steps passed" in out, out
    assert dev["deviceSecret"] not in out
    code, out = host("--url", vm.url, "--config", config, "--at", "AT+CSQ")
    assert code == 0 and out.split() == ["+CSQ:", "20,99", "OK"], out


def test_host_mode_diag_names_the_failing_step(cloud_and_module, tmp_path):
    cloud, vm, config, dev = cloud_and_module
    cfg = json.loads(open(config).read())
    cfg["device_secret"] = "WrongSecretWrongSecretWrongSecr1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cfg))
    code, out = host("--url", vm.url, "--config", str(bad), "--diag")
    assert code == 1, out
    assert "FAIL 8. MQTT connect with the configured device" in out and "refused" in out, out
    assert "stopped at step 8" in out and "WrongSecret" not in out, out


def test_host_mode_runs_the_app_until_link_up(cloud_and_module):
    cloud, vm, config, dev = cloud_and_module
    code, out = host("--url", vm.url, "--config", config, "--seconds", "12")
    assert code == 0, out
    assert "link: mqtt -> up" in out, out
    topic = "/%s/%s/user/update" % (dev["productKey"], dev["deviceName"])
    cloud.wait_uplink(lambda t, p: t == topic, timeout=5)
    code, out = host("--config", config, "--seconds", "1")
    assert code == 2 and "--port /dev/ttyUSB0" in out, out
