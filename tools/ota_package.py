"""`make ota-package VERSION=1.3.0` (python -m tools.ota_package): an over-the-air update
package of the firmware in this tree, in the format docs/ota.md defines and
firmware/update.py unpacks:

    AOTA1\\n                                            magic line
    {"version": "1.3.0", "files": [[name, size, sha256 hex], ...]}\\n    manifest, one line
    the files' bytes, one after the other in the manifest's order

The files: every firmware/*.py compiled with mpy-cross (as tools/deploy.py does; options in
--mpy-cross-opts), firmware/__init__ with the package's version in it (its one home: the
firmware reports it after the update), the bundled CA (firmware/*.pem), and main.py and
boot.py as source unless --base names the previous package and they are the same there.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from tools.deploy import DeployError, tool
from tools.proc import ROOT

MAGIC = b"AOTA1\n"  # firmware/update.py MAGIC
TOP = ("main.py", "boot.py")


def tree_version(root=ROOT):
    with open(os.path.join(root, "firmware", "__init__.py")) as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not m:
        raise DeployError("firmware/__init__.py has no __version__")
    return m.group(1)


def read(path):
    """(version, {name: bytes}) of a package; ValueError when it is not a whole one."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("%s: not an update package" % path)
        m = json.loads(f.readline())
        files = {}
        for name, size, digest in m["files"]:
            data = f.read(size)
            if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
                raise ValueError("%s: %s is cut or does not match its digest" % (path, name))
            files[name] = data
        if f.read(1):
            raise ValueError("%s: bytes after the last file" % path)
    return m["version"], files


def write(path, version, files):
    """files: [(name, bytes)] in the order they go into the package."""
    manifest = {"version": version, "files": [[n, len(d), hashlib.sha256(d).hexdigest()] for n, d in files]}
    with open(path, "wb") as f:
        f.write(MAGIC + json.dumps(manifest, separators=(",", ":")).encode() + b"\n")
        for _, d in files:
            f.write(d)
    return path


def build(out, version=None, root=ROOT, base=None, mpy_cross_opts=(), top=TOP, replace=None):
    """Write the package of the tree at `root` to `out`; returns (path, version, names).
    replace: {name: bytes} put in instead of the tree's file (the demo's and the tests'
    broken main.py)."""
    replace = replace or {}
    version = version or tree_version(root)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", version):
        raise DeployError("version %r: 1..64 letters, digits, '.', '_' or '-' (Aliyun's rule)" % version)
    old = read(base)[1] if base else {}
    mpy_cross = tool("mpy-cross")
    tmp = tempfile.mkdtemp(prefix="ota-package-")
    files = []
    try:
        for src in sorted(glob.glob(os.path.join(root, "firmware", "*.py"))):
            name = os.path.basename(src)
            if name == "__init__.py":  # the package's version, in its one home
                with open(src) as f:
                    text = re.sub(r'^__version__ = "[^"]*"', '__version__ = "%s"' % version, f.read(), flags=re.M)
                src = os.path.join(tmp, name)
                with open(src, "w") as f:
                    f.write(text)
            dst = os.path.join(tmp, name[:-3] + ".mpy")
            p = subprocess.run([mpy_cross] + list(mpy_cross_opts) + ["-s", "firmware/" + name, "-o", dst, src],
                               capture_output=True, text=True)
            if p.returncode:
                raise DeployError("mpy-cross %s: %s" % (name, (p.stdout + p.stderr).strip()[-400:]))
            with open(dst, "rb") as f:
                files.append(("firmware/" + name[:-3] + ".mpy", f.read()))
        for pem in sorted(glob.glob(os.path.join(root, "firmware", "*.pem"))):
            with open(pem, "rb") as f:
                files.append(("firmware/" + os.path.basename(pem), f.read()))
        for name in top:
            p = os.path.join(root, name)
            if os.path.exists(p) or name in replace:
                data = replace.get(name)
                if data is None:
                    with open(p, "rb") as f:
                        data = f.read()
                if old.get(name) != data:
                    files.append((name, data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(out, version, files)
    return out, version, [n for n, _ in files]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.ota_package", description=__doc__.splitlines()[0])
    ap.add_argument("--version", help="the package's version (default: firmware/__init__.py's)")
    ap.add_argument("--out", help="where to write it (default: build/ota-VERSION.bin)")
    ap.add_argument("--base", help="the previous package: main.py / boot.py go in only if they changed")
    ap.add_argument("--mpy-cross-opts", default="", help="e.g. -march=armv6m")
    a = ap.parse_args(argv)
    try:
        version = a.version or tree_version()
        out = a.out or os.path.join(ROOT, "build", "ota-%s.bin" % version)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        path, version, names = build(out, version, base=a.base, mpy_cross_opts=shlex.split(a.mpy_cross_opts))
    except (DeployError, ValueError, OSError) as e:
        print("ota-package: %s" % e, file=sys.stderr)
        return 1
    with open(path, "rb") as f:
        data = f.read()
    print("%s: version %s, %d files, %d bytes, sha256 %s, md5 %s" % (
        os.path.relpath(path), version, len(names), len(data), hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
