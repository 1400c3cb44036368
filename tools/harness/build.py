"""The firmware compiled as a board imports it, for the host tools and tests that run it:
.mpy files (what `make mpy` does) and a ROMFS image of them (`mpremote romfs build`).
tools/deploy.py compiles for a real board itself (board-specific mpy-cross options)."""
import os
import subprocess

from tools.proc import ROOT, which

FW_FILES = ["boot.py", "main.py"]


def compile_mpy(dst):
    """What `make mpy` does, into `dst` (a private directory: others may be rebuilding
    build/ at the same time). Returns dst."""
    os.makedirs(os.path.join(dst, "firmware"), exist_ok=True)
    files = ["firmware/" + f for f in sorted(os.listdir(os.path.join(ROOT, "firmware"))) if f.endswith(".py")]
    for f in files + FW_FILES:
        subprocess.run([which("mpy-cross") or "mpy-cross", "-o", os.path.join(dst, f[:-3] + ".mpy"), f], check=True, cwd=ROOT)
    return dst


def build_romfs(mpy_dir, out):
    """A ROMFS image of the compiled firmware (`mpremote romfs build`), as a board with a
    ROMFS partition would hold it. Raises CalledProcessError with mpremote's output."""
    subprocess.run([which("mpremote") or "mpremote", "romfs", "--no-mpy", "-o", out, "build", mpy_dir],
                   check=True, capture_output=True, text=True)
    return out
