"""What the host side of every benchmark shares: its command line (the file's docstring as
help, --json, --quick, its own options from a table), a line printed at once, the compiled firmware with the demo cloud,
and the figures written to --json however the run ends."""
import argparse
import contextlib
import json
import shutil
import tempfile
import textwrap

from tools.cloud.api import LocalCloud
from tools.harness.build import compile_mpy


def say(*a):
    print(*a, flush=True)


def parser(doc, quick, **defaults):
    """The benchmark's argument parser: its docstring as help, --json FILE, --quick (`quick`
    says what it cuts), and one --option per keyword (puback_delay=0.05: --puback-delay,
    a float)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--quick", action="store_true", help=quick)
    for name, default in defaults.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return ap


@contextlib.contextmanager
def firmware_and_cloud():
    """(cloud, mpy_dir): the demo cloud running and the firmware compiled as `make mpy` does
    into a private directory; both gone afterwards."""
    mpy_dir = tempfile.mkdtemp(prefix="bench-mpy-")
    cloud = LocalCloud.demo().start()
    try:
        compile_mpy(mpy_dir)
        yield cloud, mpy_dir
    finally:
        cloud.stop()
        shutil.rmtree(mpy_dir, ignore_errors=True)


@contextlib.contextmanager
def figures(path, **first):
    """The benchmark's result dict (starting with `first`), written to `path` (when given)
    however the run ends; an exception is recorded in it as "error" and raised on."""
    result = dict(first)
    try:
        yield result
    except Exception as e:
        result["error"] = repr(e)
        raise
    finally:
        if path:
            with open(path, "w") as f:
                json.dump(result, f, indent=1)


def board_text(path):
    """The lines of benchmark file `path` between its `# <board>` and `# </board>` markers,
    dedented: the script the board runs (the board has no tools/ to import it from)."""
    with open(path) as f:
        src = f.read()
    start = src.rindex("\n", 0, src.index("# <board>")) + 1
    return textwrap.dedent(src[start:src.index("# </board>")])
