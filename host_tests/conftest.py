# pytest set-up shared by every host test: the repo root and host_tests/ on sys.path, so
# `import firmware.at` and `import fwtest` work as they do under MicroPython; and the local
# cloud with the demo registry, one per test module, for the end-to-end tests.
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "host_tests")):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture(scope="module")
def cloud():
    from tools.cloud.api import LocalCloud

    with LocalCloud.demo() as c:
        yield c
