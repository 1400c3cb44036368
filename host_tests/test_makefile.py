"""The Makefile's own promises to a new user: `make help` lists every target, a .venv made by
an interpreter that is gone (or too old) is made again, a too-old python3 is refused before
anything is made, and missing system packages get one line naming them."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="no make on PATH")


def _make(cwd, *args, env=None):
    return subprocess.run([MAKE, "--no-print-directory", "-C", str(cwd)] + list(args), capture_output=True,
                          text=True, timeout=300, env=env)


def _project(tmp_path, requirements=""):
    shutil.copy(os.path.join(ROOT, "Makefile"), tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text(requirements)
    return tmp_path


def _script(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_help_lists_every_target_of_the_makefile():
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z][a-z-]*):(?!=)", f.read(), re.M))
    out = _make(ROOT, "help")
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^  ([a-z][a-z-]*)\s", out.stdout, re.M))
    assert targets - {"all"} <= listed, "targets without a `## ` line: %s" % sorted(targets - {"all"} - listed)
    assert listed <= targets


@pytest.mark.parametrize("old_python", ["exit 127", "echo 0"], ids=["gone", "older-than-3.10"])
def test_a_venv_made_by_a_wrong_interpreter_is_made_again(tmp_path, old_python):
    proj = _project(tmp_path)
    _script(proj / ".venv" / "bin" / "python", old_python)  # a removed interpreter / a python3.9 venv
    (proj / ".venv" / ".installed-stale").write_text("")
    out = _make(proj, "venv", "PY_SYS=" + sys.executable)
    assert out.returncode == 0, out.stdout + out.stderr
    ver = subprocess.run([str(proj / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.strip() == str(sys.version_info[:2])
    stamps = sorted(p.name for p in (proj / ".venv").iterdir() if p.name.startswith(".installed-"))
    assert len(stamps) == 1 and stamps[0] != ".installed-stale" and not stamps[0].endswith("-remake")
    again = _make(proj, "venv", "PY_SYS=" + sys.executable)  # made once: nothing to do now
    assert again.returncode == 0 and "venv:" not in again.stdout


def test_a_python_older_than_3_10_is_refused_before_anything_is_made(tmp_path):
    proj = _project(tmp_path)
    old = _script(tmp_path / "old" / "python3", 'exec %s -c "import sys; sys.exit(1)"' % sys.executable)
    out = _make(proj, "venv", "PY_SYS=%s" % old)
    assert out.returncode == 2
    assert "3.10" in out.stdout and "PY_SYS" in out.stdout
    assert not (proj / ".venv").exists()


def test_missing_system_packages_are_named_in_one_line_where_none_can_be_installed(tmp_path):
    proj = _project(tmp_path)
    env = dict(os.environ, PATH=str(tmp_path / "empty"))  # no apt-get, no sudo
    out = _make(proj, "sysdeps", "SYSDEPS=nosuchcmd:nosuchpkg socat:socat", env=env)
    assert out.returncode != 0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("sysdeps:")]
    assert len(lines) == 1 and "nosuchpkg" in lines[0] and "socat" in lines[0]
