"""The README's layout table matches the tree: every firmware module, every folder and tool
of tools/ and every top-level entry point has a row, and every path a row names exists."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("## Layout"):]
    table = table[: table.index("\n## ", 4)]
    return {p.rstrip("/") for p in re.findall(r"`([^`\s]+)`", "\n".join(ln.split("|")[1] for ln in table.splitlines()
                                                                          if ln.startswith("| `")))}


def test_every_path_the_layout_names_exists():
    missing = sorted(p for p in _rows() if not os.path.exists(os.path.join(ROOT, p)))
    assert missing == []


def test_every_module_and_tool_has_a_row():
    rows = _rows()
    want = {"firmware/" + n for n in os.listdir(os.path.join(ROOT, "firmware"))
            if (n.endswith(".py") or n.endswith(".pem")) and n != "__init__.py"}
    want |= {"tools/" + n for n in os.listdir(os.path.join(ROOT, "tools"))
             if n not in ("__init__.py", "__pycache__") and not n.startswith(".")}
    want |= {"main.py", "boot.py", "examples", "host_tests"}
    assert sorted(want - rows) == []
