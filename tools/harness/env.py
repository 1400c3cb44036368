"""The simulated world for end-to-end runs: the local cloud, a virtual module (an Air724UG
unless personality= names another family), and the real firmware (main.py) under the
`micropython` interpreter, in a work directory that plays the board's flash (config.json
and the local cloud's CA live there). Used by `make sim` (demo.py), the end-to-end tests,
the soak and the benchmarks.

    with SimEnv(flow="http", personality="air780e") as env:   # cloud + module up, firmware running
        env.firmware.wait_log("link: mqtt -> up")
        env.cloud.wait_uplink(lambda t, p: t == env.topics["update"])
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from tools.cloud.api import LocalCloud
from tools.proc import ROOT, Started, micropython_bin, read_lines
from tools.proc import stop as stop_process
from tools.sim import VirtualModule

CA_NAME = "ca.pem"  # the local cloud's CA on the board's flash (config.json "ca")
DEMO = {"productKey": "a1DemoPk001", "deviceName": "demo-device-1", "deviceSecret": "DemoDeviceSecret0000000000000001"}


# On a board a ROMFS partition is flash mapped into the address space; the unix port has
# none, so the image is read into one bytearray (the first allocation: one block at the
# bottom of the heap) and mounted at /rom, where imports run the bytecode in place.
ROMFS_BOOT = ("import sys, vfs\nf = open(%r, 'rb')\nimg = bytearray(f.seek(0, 2))\nf.seek(0)\n"
              "f.readinto(img)\nf.close()\ndel f\nvfs.mount(vfs.VfsRom(img), '/rom')\n"
              "sys.path.insert(0, '/rom')\nimport main\n")


# A board's start from its flash: boot.py, then main.py, both from the work directory.
FLASH_BOOT = "import boot\nimport main\n"


def copy_to_flash(workdir):
    """The firmware as `make deploy` leaves a board's flash (sources here: the unix port
    compiles them): firmware/*.py and the bundled CA, boot.py, main.py."""
    os.makedirs(os.path.join(workdir, "firmware"), exist_ok=True)
    for name in os.listdir(os.path.join(ROOT, "firmware")):
        if name.endswith((".py", ".pem")):
            shutil.copyfile(os.path.join(ROOT, "firmware", name), os.path.join(workdir, "firmware", name))
    for name in ("boot.py", "main.py"):
        shutil.copyfile(os.path.join(ROOT, name), os.path.join(workdir, name))


class Firmware:
    """main.py under micropython, its log collected line by line. flash=True: the firmware
    on the work directory (copy_to_flash) runs from there, boot.py first, as on a board;
    boots=N: when the process ends (a reset: machine.reset()'s stand-in, a crash the
    watchdog would reset) it is started again, up to N times, its log going on in `lines`."""

    def __init__(self, workdir, heapsize=None, mpy_dir=None, echo=None, script=None, args=(), romfs=None,
                 flash=False, boots=0):
        self.flash = flash
        self.boots = boots
        self.resets = 0
        self._stopping = False
        self.workdir = workdir
        self.romfs = romfs  # a ROMFS image of the .mpy files (mpremote romfs build): run from it
        self.script = script  # another firmware-level script instead of main.py (tests)
        self.args = list(args)
        self.heapsize = heapsize
        self.mpy_dir = mpy_dir  # run compiled .mpy files from here instead of the sources
        self.echo = echo  # callable(line) to show the log live
        self.lines = []
        self._cv = threading.Condition()
        self.proc = None

    def start(self):
        mp = micropython_bin()
        if not mp:
            raise RuntimeError("no micropython interpreter: run `make venv`")
        cmd = [mp]
        if self.heapsize:
            cmd += ["-X", "heapsize=%s" % self.heapsize]
        env = dict(os.environ)
        if self.romfs:  # the image stands in for a board's ROMFS partition: read, mount, import
            cmd += ["-c", ROMFS_BOOT % self.romfs]
            env["MICROPYPATH"] = ".frozen"
        elif self.mpy_dir:
            cmd += ["-c", "import main"]
            env["MICROPYPATH"] = self.mpy_dir + ":.frozen"  # .frozen: asyncio, as on a board
        elif self.flash:
            cmd += ["-c", FLASH_BOOT]
            env["MICROPYPATH"] = ".:.frozen"
        else:
            cmd += [self.script or os.path.join(ROOT, "main.py")] + self.args
            env["MICROPYPATH"] = ROOT + ":.frozen"
        self._cmd, self._env = cmd, env
        self._spawn()
        return self

    def _spawn(self):
        self.proc = subprocess.Popen(self._cmd, cwd=self.workdir, env=self._env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc):
        read_lines(proc.stdout, self.lines, self._cv, self.echo)
        rc = proc.wait()
        with self._cv:
            if self._stopping or self.resets >= self.boots:
                return
            self.resets += 1
            self.lines.append("harness: board reset (exit %s), boot %d" % (rc, self.resets + 1))
            self._spawn()
            self._cv.notify_all()

    def wait_log(self, match, timeout=30.0, since=0):
        """The first log line (from index `since`) containing `match` (or for which
        match(line) is true); TimeoutError with the log's tail otherwise."""
        test = match if callable(match) else (lambda line: match in line)
        deadline = time.monotonic() + timeout
        i = since
        with self._cv:
            while True:
                while i < len(self.lines):
                    if test(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                dead = self.proc.poll() is not None and self.resets >= self.boots
                if left <= 0 or (dead and i >= len(self.lines)):
                    tail = "\n".join(self.lines[-30:])
                    state = "exited %s" % self.proc.returncode if self.proc.poll() is not None else "running"
                    raise TimeoutError("firmware log has no %r after %.0f s (%s); last lines:\n%s" % (match, timeout, state, tail))
                self._cv.wait(min(left, 0.2))

    def text(self):
        with self._cv:
            return "\n".join(self.lines)

    def stop(self):
        with self._cv:
            self._stopping = True
            p, self.proc = self.proc, None
        if p is None:
            return None
        return stop_process(p, 5)


class SimEnv(Started):
    """Local cloud + virtual module + firmware. `cfg` overrides config.json fields,
    `vm` passes options to VirtualModule, `device` picks the triple (DEMO by default),
    `personality` the module family played (tools/sim/personality.py: "air724ug" by
    default, "air780e", "air780ep"). The board's flash holds the local cloud's CA as
    ca.pem, named by the config's `ca`: a module that verifies (the Air780 family) checks
    the broker and the auth server against it."""

    def __init__(self, flow="mqtt", tls=True, device=DEMO, cfg=None, vm=None, cloud=None,
                 start_firmware=True, heapsize=None, mpy_dir=None, echo=None, romfs=None,
                 personality=None, flash=False, boots=0):
        self.flash = flash  # the firmware runs from the work dir's copy (Firmware's flash=)
        self.boots = boots
        self.flow = flow
        self.tls = tls
        self.personality = personality
        self.device = dict(device)
        self.cfg_overrides = cfg or {}
        self.vm_options = vm or {}
        self.cloud = cloud
        self._own_cloud = cloud is None
        self.start_firmware = start_firmware
        self.heapsize = heapsize
        self.mpy_dir = mpy_dir
        self.romfs = romfs
        self.echo = echo
        self.vm = None
        self.firmware = None
        self.workdir = None
        pk, dn = self.device["productKey"], self.device["deviceName"]
        self.topics = {"update": "/%s/%s/user/update" % (pk, dn), "get": "/%s/%s/user/get" % (pk, dn)}

    def config(self):
        cfg = {
            "product_key": self.device["productKey"],
            "device_name": self.device["deviceName"],
            "device_secret": self.device["deviceSecret"],
            "auth": self.flow,
            "tls": self.tls,
            "sign_method": "hmacmd5" if self.flow == "http" else "hmacsha256",
            "keepalive": 60,
            "interval": 1,
            "uart": {"url": self.vm.url},
            "ca": CA_NAME,
        }
        cfg.update(self.cfg_overrides)
        return cfg

    def start(self):
        try:
            if self.cloud is None:
                self.cloud = LocalCloud.demo().start()
            vm = dict(self.vm_options)
            if self.personality is not None:
                vm["personality"] = self.personality
            self.vm = VirtualModule(auth_url=self.cloud.auth_url,
                                    auths_url=self.cloud.info.get("auths_url"),
                                    mqtt_addr=("127.0.0.1", self.cloud.mqtt_port),
                                    mqtts_addr=("127.0.0.1", self.cloud.mqtts_port),
                                    **vm).start()
            self.mark = len(self.cloud.uplinks())  # uplinks before this run are not ours
            self.workdir = tempfile.mkdtemp(prefix="board-")
            shutil.copyfile(self.cloud.ca_file, os.path.join(self.workdir, CA_NAME))
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                json.dump(self.config(), f, indent=1)
            if self.flash:
                copy_to_flash(self.workdir)
            if self.start_firmware:
                self.run_firmware()
        except BaseException:
            self.stop()
            raise
        return self

    def uplinks(self, topic="update"):
        """[(topic, payload, qos)] this run's device published on topics[topic]."""
        return [u for u in self.cloud.uplinks()[self.mark:] if u[0] == self.topics[topic]]

    def wait_uplink(self, pred=None, topic="update", timeout=15.0):
        t = self.topics[topic]
        return self.cloud.wait_uplink(lambda tp, p: tp == t and (pred is None or pred(p)), timeout, since=self.mark)

    def run_firmware(self, script=None, args=()):
        self.firmware = Firmware(self.workdir, self.heapsize, self.mpy_dir, self.echo, script, args, self.romfs,
                                 self.flash, self.boots).start()
        return self.firmware

    def stop(self):
        if self.firmware:
            self.firmware.stop()
        if self.vm:
            self.vm.stop()
        if self.cloud and self._own_cloud:
            self.cloud.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
