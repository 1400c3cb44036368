"""The board tier's world: the local cloud and a virtual Air724 module (tools/harness/env.py
SimEnv, without its unix-port firmware), an emulated Pico (pico.py) whose UART1 dials that
module, and the firmware put on the Pico the way a user does it: `make deploy
PORT=socket://127.0.0.1:N CONFIG=...`, which resets the board, so main.py runs from its
flash as after power-up. The board's REPL (its console) is read from then on.

    with BoardEnv(kit.find(), "v1.28.0", flow="mqtt") as b:
        b.console.wait_log("link: mqtt -> up", timeout=240)
        b.wait_uplink(lambda p: ...)           # at the cloud (SimEnv's helpers)
        b.vm.closed()                           # the module's faults
        b.pico.resets()                         # every reboot, from the emulator

run_main=False deploys without the reset (--no-reset) and leaves the board at its REPL:
for the benchmarks, which run their own code there.
"""
import json
import os
import subprocess

from tools.board.pico import Pico
from tools.harness.env import SimEnv
from tools.proc import ROOT, Started, which

# what the board's config.json adds to SimEnv's (device, flow, TLS): a Pico's UART1 (pins
# are not emulated: any pins work), the watchdog at most of the RP2040's 8388 ms
BOARD_UART = {"id": 1, "tx": 4, "rx": 5, "baud": 115200}
WDT_MS = 8000


def board_config(world, **fields):
    """config.json for a Pico wired to world.vm (a SimEnv): SimEnv's, its UART a board's."""
    cfg = world.config()
    cfg["uart"] = dict(BOARD_UART)
    cfg["wdt_ms"] = WDT_MS
    cfg.update(fields)
    return cfg


class DeployFailed(RuntimeError):
    pass


def deploy(port, config, reset=True, timeout=600):
    """`make deploy PORT=port CONFIG=config` (NORESET=1 without reset): its output, or
    DeployFailed with it."""
    cmd = ["make", "-s", "--no-print-directory", "deploy", "PORT=" + port, "CONFIG=" + config]
    if not reset:
        cmd.append("NORESET=1")
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise DeployFailed("make deploy failed (exit %d):\n%s" % (p.returncode, (p.stdout + p.stderr)[-3000:]))
    return p.stdout


def put(port, src, dst):
    """One file onto the board (mpremote fs cp)."""
    p = subprocess.run([which("mpremote") or "mpremote", "connect", port, "fs", "cp", src, dst],
                       capture_output=True, text=True, timeout=120)
    if p.returncode:
        raise DeployFailed("mpremote fs cp %s %s failed: %s" % (src, dst, (p.stdout + p.stderr)[-1000:]))


class BoardEnv(Started):
    """cfg: config.json fields over board_config(); vm: VirtualModule options; cloud: a
    running LocalCloud to share; echo(line): the board's console live; emu_echo(line):
    the emulator's messages."""

    def __init__(self, kit, image="v1.28.0", flow="mqtt", tls=True, cfg=None, vm=None, cloud=None,
                 personality=None, run_main=True, fs=None, deploy=True, stats=0, echo=None, emu_echo=None):
        self.kit = kit
        self.image = image
        self.world = SimEnv(flow=flow, tls=tls, cfg=cfg, vm=vm, cloud=cloud, personality=personality,
                            start_firmware=False)
        self.run_main = run_main
        self.fs = fs  # the board's flash in this file (kept), else a fresh temporary one
        self.deploy = deploy  # False: the flash in `fs` has the firmware already (it boots into main.py)
        self.stats = stats  # seconds between the emulator's CPU samples (Pico.cpu), 0: none
        self.echo = echo
        self.emu_echo = emu_echo
        self.pico = None
        self.console = None
        self.config_path = None
        self.deploy_output = None

    # the world's pieces and helpers, as SimEnv has them
    cloud = property(lambda self: self.world.cloud)
    vm = property(lambda self: self.world.vm)
    topics = property(lambda self: self.world.topics)
    device = property(lambda self: self.world.device)

    def uplinks(self, topic="update"):
        return self.world.uplinks(topic)

    def wait_uplink(self, pred=None, topic="update", timeout=60.0):
        return self.world.wait_uplink(pred, topic, timeout)

    def start(self):
        try:
            self.world.start()
            self.pico = Pico(self.kit, self.image, uart1=("127.0.0.1", self.vm.port), fs=self.fs,
                             echo=self.emu_echo, stats=self.stats).start()
            cfg = board_config(self.world, **self.world.cfg_overrides)
            self.config_path = os.path.join(self.world.workdir, "board-config.json")
            with open(self.config_path, "w") as f:
                json.dump(cfg, f, indent=1)
            if self.deploy:
                # the local cloud's CA (config "ca", SimEnv's ca.pem) first: deploy leaves it there
                put(self.pico.port, self.cloud.ca_file, ":" + cfg["ca"])
                self.deploy_output = deploy(self.pico.port, self.config_path, reset=self.run_main)
            self.console = self.pico.repl(echo=self.echo)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.console:
            self.console.stop()
        if self.pico:
            self.pico.stop()
        self.world.stop()
