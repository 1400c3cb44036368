# pytest set-up shared by every host test: the repo root and host_tests/ on sys.path, so
# `import firmware.at` and `import fwtest` work as they do under MicroPython.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "host_tests")):
    if p not in sys.path:
        sys.path.insert(0, p)
