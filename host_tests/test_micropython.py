# Runs every firmware-level test module (host_tests/test_fw_*.py) under the real
# `micropython` interpreter, one pytest item per test function, so one `make test`
# reports both interpreters. The modules themselves also run under CPython as usual.
import ast
import glob
import os
import subprocess

import pytest

from tools.proc import micropython_bin

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _cases():
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_fw_*.py"))):
        mod = os.path.basename(path)[:-3]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out.append((mod, node.name))
    return out


_results = {}


def _run_module(mod):
    assert micropython_bin(), "no micropython interpreter: run `make test`, which installs it"
    if mod not in _results:
        env = dict(os.environ, MICROPYPATH=ROOT + ":" + HERE)
        proc = subprocess.run(
            [micropython_bin(), "-X", "heapsize=4m", os.path.join(HERE, "mprun.py"), mod],
            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
        )
        res = {}
        cur = None
        for line in proc.stdout.splitlines():
            if line.startswith(("PASS ", "FAIL ")):
                name = line[5:].split(":", 1)[0].split(".", 1)[1]
                cur = name
                res[name] = [line[:4], line]
            elif cur and line.startswith("    "):
                res[cur][1] += "\n" + line
        _results[mod] = (res, proc.stdout + proc.stderr)
    return _results[mod]


@pytest.mark.parametrize("mod,name", _cases())
def test_under_micropython(mod, name):
    res, output = _run_module(mod)
    assert name in res, "%s.%s did not run under micropython:\n%s" % (mod, name, output[-3000:])
    status, text = res[name]
    assert status == "PASS", text
