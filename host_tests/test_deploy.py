# `make deploy` for real, against the virtual board (tools/harness/vboard.py: the unix port behind a
# pty, driven by mpremote exactly like a board on a USB cable): the files that land in its
# flash, the .mpy (not a .py) that `import firmware.at` loads there, and the deployed firmware
# itself, started by deploy's reset and run on the virtual board against the virtual Air724
# module and the local cloud until the link is up and the cloud has its first uplink. The
# virtual board itself: Ctrl-C stops running code, a soft reset is a fresh interpreter, and
# its flash directory is its whole file system. (The emulated Pico: test_board.py.)
import json
import os
import subprocess
import sys
import uuid

import pytest

from tools.board.repl import Repl
from tools.deploy import main as deploy_main
from tools.harness.vboard import VirtualBoard
from tools.proc import ROOT, which

MPREMOTE = which("mpremote") or "mpremote"
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py"))
DATA = sorted(f for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".pem"))  # the bundled CA
SECRET = "DemoDeviceSecret0000000000000001"


def mpremote(port, *words, timeout=60):
    p = subprocess.run([MPREMOTE, "connect", port] + list(words), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def deploy(port, config):
    p = subprocess.run(["make", "-s", "deploy", "PORT=" + port, "CONFIG=" + config],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_vboard_flash_is_the_whole_file_system(tmp_path):
    name = "vboard_probe_%s.py" % uuid.uuid4().hex[:8]
    (tmp_path / name).write_text("X = 42\n")
    with VirtualBoard() as vb:
        mpremote(vb.port, "fs", "mkdir", ":/lib", "+", "fs", "cp", str(tmp_path / name), ":/lib/" + name)
        assert os.listdir(os.path.join(vb.flash, "lib")) == [name]
        assert not os.path.exists(os.path.join("/lib", name))
        got = mpremote(vb.port, "exec", "import os, %s as m; print(m.X, m.__file__, os.getcwd(), os.listdir('/'))" % name[:-3])
        assert got.split() == ["42", "/lib/" + name, "/", "['lib']"], got


def test_vboard_soft_reset_is_a_fresh_interpreter():
    with VirtualBoard() as vb:
        mpremote(vb.port, "exec", "import sys; sys.modules['vb_marker'] = sys")
        boots = vb.boots
        # mpremote soft-resets on connecting: a new interpreter, nothing imported from before
        assert mpremote(vb.port, "exec", "import sys; print('vb_marker' in sys.modules)").split() == ["False"]
        assert vb.boots == boots + 1
        # `resume` skips the soft reset: the same interpreter
        mpremote(vb.port, "resume", "exec", "import sys; sys.modules['vb_marker'] = sys")
        assert mpremote(vb.port, "resume", "exec", "import sys; print('vb_marker' in sys.modules)").split() == ["True"]
        assert vb.boots == boots + 1


MAIN = """import time
try:
    print("main: started")
    while True:
        time.sleep_ms(20)
except KeyboardInterrupt:
    print("main: interrupted")
"""


def test_vboard_ctrl_c_stops_running_code_as_on_a_board(tmp_path):
    (tmp_path / "main.py").write_text(MAIN)
    with VirtualBoard(flash=str(tmp_path)) as vb, Repl.tty(vb.port) as r:
        # power-on runs main.py, as a board does; Ctrl-C stops it and the REPL is there
        r.wait_for(b"main: started", 0, 30)
        boots = vb.boots
        r.interrupt()
        r.wait_for(b"main: interrupted", 0, 30)
        r.raw()
        m = r.mark()  # a busy loop in the raw REPL: KeyboardInterrupt, back at the prompt
        r.write(b"print('spin')\nwhile True:\n    pass\n\x04")
        r.wait_for(b"spin", m, 30)
        r.interrupt()
        r.wait_for(b"KeyboardInterrupt", m, 30)
        assert r.exec("print(6 * 7)").strip() == "42"
        assert vb.boots == boots  # interrupted, never restarted
        # a soft reset from the friendly REPL: a fresh interpreter running main.py again
        r.friendly()
        m = r.mark()
        r.write(b"\r\x04")
        r.wait_for(b"main: started", m, 30)
        assert vb.boots == boots + 1 and b"MPY: soft reboot" in r.data[m:]
        r.interrupt()
        r.wait_for(b"main: interrupted", m, 30)


def test_deploy_says_when_the_port_is_not_there(capsys):
    assert deploy_main(["--port", "socket://127.0.0.1:1"]) == 1
    assert "nothing answers at socket://127.0.0.1:1" in capsys.readouterr().err
    assert deploy_main(["--port", "/dev/no-such-tty"]) == 1
    assert "/dev/no-such-tty does not exist" in capsys.readouterr().err


@pytest.fixture
def world():
    """Local cloud + virtual module (tools/harness/env.py) + virtual board, all stopped afterwards."""
    from tools.harness.env import DEMO, SimEnv

    with SimEnv(start_firmware=False) as env, VirtualBoard() as vb:
        yield env.cloud, env.vm, vb, DEMO


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

    boots = vb.boots
    out = deploy(vb.port, str(config))
    assert "deployed %d modules, config, board reset" % len(MODULES) in out, out

    flash = vb.flash
    assert sorted(os.listdir(flash)) == ["boot.py", "config.json", "firmware", "main.py"]
    assert sorted(os.listdir(os.path.join(flash, "firmware"))) == sorted([m + ".mpy" for m in MODULES] + DATA)
    for name in ["boot.py", "main.py"] + ["firmware/" + d for d in DATA]:
        with open(os.path.join(flash, name), "rb") as a, open(os.path.join(ROOT, name), "rb") as b:
            assert a.read() == b.read(), name
    with open(os.path.join(flash, "config.json")) as f:
        assert json.load(f) == cfg
    with open(os.path.join(flash, "firmware", "at.mpy"), "rb") as f:
        assert f.read(2) == b"M\x06"  # .mpy v6

    # deploy's reset: a fresh interpreter that runs main.py by itself, until the link is up
    # (a pty has one reader at a time: the console opens once mpremote has let go)
    with Repl.tty(vb.port) as con:
        con.wait_log("link: mqtt -> up", timeout=60)
        assert vb.boots > boots
        topic = "/%s/%s/user/update" % (dev["productKey"], dev["deviceName"])
        tp, payload, qos = cloud.wait_uplink(lambda t_, p: t_ == topic, timeout=30)
        assert json.loads(payload)["seq"] >= 1 and qos == 1
        log = con.text()
        assert "Traceback" not in log, log
        assert SECRET not in log
    assert any(c.startswith("AT+SSLMIPSTART") for c in vm.commands)

    # the board imports the compiled module from its own flash (mpremote's Ctrl-C stops main.py)
    got = mpremote(vb.port, "exec", "import firmware.at, sys; print(firmware.at.__file__, sys.path)")
    assert got.split()[0] == "firmware/at.mpy", got


def test_package_json_installs_the_firmware_with_mip():
    """package.json lists every module by a URL relative to itself, so
    `mpremote mip install github:OWNER/REPO` works for any fork; proven here with the same
    mip code reading the local package.json into the virtual board."""
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    import firmware
    assert pkg["version"] == firmware.__version__
    data = ["firmware/aliyun-ca.pem"]  # the bundled CA: config "ca" reads it on the board
    assert sorted(dst for dst, src in pkg["urls"]) == sorted(["firmware/%s.py" % m for m in MODULES] + data), \
        "package.json does not list every firmware module and data file: run `make package`"
    assert all(src == dst for dst, src in pkg["urls"])
    with VirtualBoard() as vb:
        mpremote(vb.port, "mip", "install", "--target", ".", os.path.join(ROOT, "package.json"))
        assert sorted(os.listdir(os.path.join(vb.flash, "firmware"))) == sorted([m + ".py" for m in MODULES] + ["aliyun-ca.pem"])
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
