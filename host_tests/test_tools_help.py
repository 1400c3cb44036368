"""Every command-line tool says what each of its options and arguments does, and its usage
line names the command a user types (python -m tools.X), so `--help` is enough to use it."""
import argparse
import glob
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tools():
    """Every module of tools/ that parses a command line (python -m tools.X)."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tools", "**", "*.py"), recursive=True)):
        with open(path) as f:
            src = f.read()
        if ("ArgumentParser(" in src or "_Parser(" in src) and (path.endswith("__main__.py") or "__main__" in src):
            name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            out.append(name[: -len(".__main__")] if name.endswith(".__main__") else name)
    return out


TOOLS = _tools()


def test_the_tools_are_found():
    assert {"tools.cloud", "tools.cloud.console", "tools.sim", "tools.sign", "tools.deploy", "tools.bench"} <= set(TOOLS)


class _Parsed(Exception):
    pass


def _parser(name, monkeypatch):
    def grab(self, *a, **k):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", grab)
    mod = importlib.import_module(name)
    main = getattr(mod, "main", None) or importlib.import_module(name + ".__main__").main
    with pytest.raises(_Parsed) as got:
        main([]) if main.__code__.co_argcount else main()
    return got.value.args[0]


def _undocumented(p, path):
    out = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for cmd, sp in a.choices.items():
                out += _undocumented(sp, path + " " + cmd)
        elif not isinstance(a, argparse._HelpAction) and not a.help:
            out.append("%s %s" % (path, "/".join(a.option_strings) or a.dest))
    return out


@pytest.mark.parametrize("name", TOOLS)
def test_every_option_has_a_help_text_and_the_usage_names_the_command(name, monkeypatch):
    p = _parser(name, monkeypatch)
    assert p.prog == "python -m " + name
    assert p.description
    assert _undocumented(p, name) == []
