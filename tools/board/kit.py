"""Where the emulated Pico comes from: the rp2emu kit, a folder outside the repository that
holds an RP2040 emulator (rp2040js, run by Node) and the real MicroPython rp2 firmware
images built for RPI_PICO. Nothing of it is committed here (it holds MicroPython binaries).

    RP2EMU=/path/to/rp2emu     the kit; default: ../shared/rp2emu beside the repository,
                               when that folder exists (CI always has it there)

A kit is usable when it has rp2emu.mjs, node_modules/rp2040js, the image asked for, and
`node` (18 or later; built and checked with Node 20) is on PATH. find() says in one line
what is missing and how to get it; the board tests skip with that line.
"""
import os
import re
import shutil
import subprocess

from tools.proc import ROOT

# the images the board tier runs: v1.28.0 has hashlib.md5 (rp2 has it from v1.27.0 on),
# v1.26.1 has not (the firmware's pure-Python MD5 runs there)
IMAGES = {"v1.28.0": "firmware-v1.28.0-RPI_PICO.uf2", "v1.26.1": "firmware-v1.26.1-RPI_PICO.uf2"}
DEFAULT = os.path.join(os.path.dirname(ROOT), "shared", "rp2emu")
HOW = ("set RP2EMU=/path/to/rp2emu, the emulator kit (rp2emu.mjs + rp2040js 1.4.1 + MicroPython "
       "RPI_PICO images %s; see README, Board tier)" % " and ".join(IMAGES))


class KitMissing(Exception):
    """One line: what is missing and how to get it."""


class Kit:
    def __init__(self, path, node):
        self.path = path
        self.node = node
        self.runner = os.path.join(path, "rp2emu.mjs")

    def image(self, version):
        """The .uf2 of MicroPython `version` ("v1.28.0"); KitMissing when the kit lacks it."""
        name = IMAGES.get(version, "firmware-%s-RPI_PICO.uf2" % version)
        f = os.path.join(self.path, name)
        if not os.path.isfile(f):
            raise KitMissing("the rp2emu kit at %s has no %s: %s" % (self.path, name, HOW))
        return f

    def __repr__(self):
        return "Kit(%r)" % self.path


def _node():
    node = shutil.which("node")
    if not node:
        raise KitMissing("no `node` on PATH: the emulated Pico runs on Node 18+ (apt-get install -y nodejs)")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", out)
    if not m or int(m.group(1)) < 18:
        raise KitMissing("node %s is too old for the emulated Pico: it needs Node 18 or later (20 checked)" % (out or "?"))
    return node


def find(environ=None, images=("v1.28.0",)):
    """The kit named by RP2EMU (else the default place), checked for `images`; KitMissing
    with one line otherwise."""
    env = os.environ if environ is None else environ
    path = env.get("RP2EMU") or ""
    if not path:
        if not os.path.isdir(DEFAULT):
            raise KitMissing("no emulated Pico: RP2EMU is not set and %s does not exist; %s" % (DEFAULT, HOW))
        path = DEFAULT
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "rp2emu.mjs")):
        raise KitMissing("RP2EMU=%s has no rp2emu.mjs: %s" % (path, HOW))
    if not os.path.isdir(os.path.join(path, "node_modules", "rp2040js")):
        raise KitMissing("the rp2emu kit at %s has no node_modules/rp2040js: run `npm ci` there" % path)
    kit = Kit(path, _node())
    for v in images:
        kit.image(v)
    return kit
