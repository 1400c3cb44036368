# A tiny test runner for MicroPython (and CPython): imports each named test module, calls
# every function whose name starts with test_, and prints one line per test:
#   PASS <module>.<name>      or      FAIL <module>.<name>: <exception>
# then "N passed, N failed". host_tests/test_micropython.py drives it under pytest.
# Usage: MICROPYPATH=<repo>:<repo>/host_tests micropython host_tests/mprun.py test_fw_at ...
import sys

if ".frozen" not in sys.path:  # MICROPYPATH replaces the unix port's path: its frozen asyncio too
    sys.path.append(".frozen")


def _trace(e):
    try:
        import io

        buf = io.StringIO()
        sys.print_exception(e, buf)
        return buf.getvalue()
    except AttributeError:  # CPython
        import traceback

        return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def run(names):
    passed = failed = 0
    for modname in names:
        mod = __import__(modname)
        tests = sorted(n for n in dir(mod) if n.startswith("test_"))
        for name in tests:
            fn = getattr(mod, name)
            if not callable(fn):
                continue
            try:
                fn()
            except Exception as e:
                failed += 1
                text = _trace(e).replace("\n", "\n    ")
                print("FAIL %s.%s: %s" % (modname, name, text))
            else:
                passed += 1
                print("PASS %s.%s" % (modname, name))
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1:]) else 0)
