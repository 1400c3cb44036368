# The apply at boot (firmware/update.py, docs/ota.md), on a scratch "flash" directory:
# unpack, swap and trial; a package with a corrupted file refused with nothing replaced; a
# power cut at every file-system operation of the apply and of the rollback (an exception
# that nothing in update.py catches, raised instead of the operation, or halfway through a
# write), then a boot run to its end: exactly one whole firmware, the old or the new one,
# never a mix; a new firmware that never connects rolled back. CPython and MicroPython.
import json
import os
from hashlib import sha256
from random import getrandbits

from fwtest import raises

from firmware import update
from firmware.port import hexlify, ticks_ms

OLD_FILES = {"firmware/__init__.py": b'__version__ = "1.0"\n', "firmware/app.py": b"# app 1.0\n",
             "firmware/link.py": b"# link 1.0\n", "main.py": b"# main 1.0\n", "boot.py": b"# boot 1.0\n"}
NEW_FILES = {"firmware/__init__.mpy": b"M\x06 2.0", "firmware/app.mpy": b"M\x06 app 2.0" * 300,
             "firmware/extra.mpy": b"M\x06 extra 2.0", "main.py": b"# main 2.0\n"}


class PowerCut(BaseException):
    """Not an Exception: nothing in the firmware catches it, as nothing survives a power cut."""


def package(files, version="2.0"):
    entries = [[n, len(d), hexlify(sha256(d).digest()).decode()] for n, d in files]
    return update.MAGIC + json.dumps({"version": version, "files": entries}).encode() + b"\n" + b"".join(d for _, d in files)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Flash:
    """A scratch directory as the board's flash root (the current directory meanwhile)."""

    def __init__(self):
        self.home = os.getcwd()
        while True:  # other test runs (other checkouts, the other interpreter) make theirs too
            self.root = "/tmp/fwtest-update-%d-%d" % (ticks_ms(), getrandbits(30))
            try:
                os.mkdir(self.root)
                break
            except OSError:
                pass
        os.chdir(self.root)
        os.mkdir("firmware")
        for name, data in OLD_FILES.items():
            write(name, data)

    def stage(self, files=None, version="2.0", tries=2):
        os.mkdir("ota")
        write(update.PKG, package(sorted((files or NEW_FILES).items()), version))
        update.write_json(update.STATE, {"phase": "unpack", "version": version, "from": "1.0", "tries": tries})

    def code(self):
        """What a boot would run: every file of firmware/ and the top files."""
        out = {}
        for name in os.listdir("firmware") if update.exists("firmware") else ():
            out["firmware/" + name] = read("firmware/" + name)
        for name in update.TOP:
            if update.exists(name):
                out[name] = read(name)
        return out

    def close(self):
        os.chdir(self.home)
        update.remove(self.root)


def expect_new():
    want = dict(NEW_FILES)
    want["boot.py"] = OLD_FILES["boot.py"]  # not in the package: kept
    return want


class Cutter:
    """Stands in for update.py's `os` and `open`: counts the operations that change the
    flash and cuts the power at operation number `at` (a write then keeps half its bytes)."""

    def __init__(self, at):
        self.at = at
        self.n = 0

    def _op(self):
        self.n += 1
        if self.n == self.at:
            raise PowerCut()

    def __getattr__(self, name):
        fn = getattr(os, name)
        if name not in ("rename", "remove", "rmdir", "mkdir"):
            return fn

        def op(*args):
            self._op()
            return fn(*args)
        return op

    def open(self, path, mode="r"):
        if "w" in mode or "a" in mode:
            self._op()
            return _CutFile(open(path, mode), self)
        return open(path, mode)


class _CutFile:
    def __init__(self, f, cutter):
        self.f = f
        self.cutter = cutter

    def write(self, data):
        try:
            self.cutter._op()
        except PowerCut:
            self.f.write(data[: len(data) // 2])
            self.f.close()
            raise
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def with_cut(at, fn):
    """fn() with the power cut at operation `at`; True when the cut came (else fn ended)."""
    cutter = Cutter(at)
    update.os = cutter
    update.open = cutter.open
    try:
        fn()
        return False
    except PowerCut:
        return True
    finally:
        update.os = os
        del update.open


def test_unpack_swap_trial_and_kept_when_connected():
    fl = Flash()
    try:
        fl.stage()
        assert update.boot() == "trial"
        assert fl.code() == expect_new()
        assert read("firmware.old/app.py") == OLD_FILES["firmware/app.py"]
        assert read("firmware.old/main.py") == OLD_FILES["main.py"]  # the old top file, for a rollback
        assert not update.exists(update.PKG) and not update.exists(update.NEW)
        st = update.read_json(update.STATE)
        assert st["phase"] == "trial" and st["boots"] == 1 and st["top"] == ["main.py"]
        assert update.pending() == (True, False)
        assert update.boot() == "trial" and update.read_json(update.STATE)["boots"] == 2
        assert update.connected() is True
        assert not update.exists(update.STATE) and update.boot() is None and update.connected() is False
        assert fl.code() == expect_new() and update.exists(update.OLD)  # old kept until the next update
    finally:
        fl.close()


def test_nothing_staged_is_nothing_done():
    fl = Flash()
    try:
        assert update.boot() is None and update.pending() == (False, False)
        assert fl.code() == OLD_FILES
    finally:
        fl.close()


def test_corrupted_file_refused_nothing_replaced():
    fl = Flash()
    try:
        fl.stage()
        data = bytearray(read(update.PKG))
        data[-10] ^= 0x01  # inside the last file (main.py): its digest no longer matches
        write(update.PKG, data)
        assert update.boot() == "unpack"
        assert fl.code() == OLD_FILES
        r = update.read_json(update.RESULT)
        assert r["step"] == -3 and "main.py: digest mismatch" in r["desc"] and r["version"] == "2.0"
        for p in (update.STATE, update.PKG, update.NEW, "main.py.new"):
            assert not update.exists(p), p
        assert update.boot() is None and fl.code() == OLD_FILES
        assert update.pending() == (False, True)  # the result waits for firmware/ota.py
    finally:
        fl.close()


def test_package_version_or_names_wrong_refused():
    for files, version, why in (
            (NEW_FILES, "3.0", "package holds 2.0, not 3.0"),
            ({"firmware/../boot.py": b"x", "firmware/__init__.mpy": b"v"}, "2.0", "file name"),
            ({"firmware/app.mpy": b"x"}, "2.0", "no firmware/__init__")):
        fl = Flash()
        try:
            fl.stage(files, "2.0")
            if version != "2.0":
                update.write_json(update.STATE, {"phase": "unpack", "version": version, "tries": 2})
            assert update.boot() == "unpack"
            assert fl.code() == OLD_FILES
            assert why in update.read_json(update.RESULT)["desc"]
        finally:
            fl.close()


def test_manifest_refusals():
    class F:
        def __init__(self, data):
            self.data, self.pos = data, 0

        def read(self, n):
            self.pos += n
            return self.data[self.pos - n:self.pos]

        def readline(self, n):
            i = self.data.find(b"\n", self.pos)
            end = min(self.pos + n, len(self.data) if i < 0 else i + 1)
            out = self.data[self.pos:end]
            self.pos = end
            return out

    assert "not an update package" in str(raises(ValueError, update.manifest, F(b"PK\x03\x04...")))
    assert "over 8192" in str(raises(ValueError, update.manifest, F(update.MAGIC + b"{" * 9000)))
    bad = update.MAGIC + b'{"version": "2", "files": [["firmware/a.mpy", -1, "00"]]}\n'
    assert "manifest entry" in str(raises(ValueError, update.manifest, F(bad)))
    ok = package([("firmware/__init__.mpy", b"v")])
    assert update.manifest(F(ok))[0] == "2.0"


def test_power_cut_at_every_step_of_the_apply():
    at = 1
    while True:
        fl = Flash()
        try:
            fl.stage()
            cut = with_cut(at, update.boot)
            state = fl.code()
            # the cut may leave the swap half done (between two renames there is no firmware/
            # for a moment): the next boot finishes it before main.py runs
            assert update.boot() == "trial", at
            assert fl.code() == expect_new(), at
            assert read("firmware.old/main.py") == OLD_FILES["main.py"], at
            assert update.read_json(update.STATE)["boots"] in (1, 2), at
            if not cut:
                assert state == expect_new()
                break
        finally:
            fl.close()
        at += 1
    assert at > 20  # every mkdir, write, rename and remove of the apply had its cut


def test_never_connected_rolled_back():
    fl = Flash()
    try:
        fl.stage(tries=2)
        assert update.boot() == "trial" and update.boot() == "trial"
        assert update.boot() == "rollback"
        assert fl.code() == OLD_FILES
        r = update.read_json(update.RESULT)
        assert r["step"] == -1 and r["version"] == "2.0" and "did not connect in 2 boots: back to 1.0" in r["desc"]
        for p in (update.STATE, update.BAD, update.OLD, "firmware/main.py"):
            assert not update.exists(p), p
        assert update.boot() is None
    finally:
        fl.close()


def test_power_cut_at_every_step_of_the_rollback():
    at = 1
    while True:
        fl = Flash()
        try:
            fl.stage(tries=1)
            update.boot()
            cut = with_cut(at, update.boot)  # the second boot of a one-try trial: rollback
            if cut:
                update.boot()
            assert fl.code() == OLD_FILES, at
            assert not update.exists(update.STATE) and update.read_json(update.RESULT)["step"] == -1, at
            if not cut:
                break
        finally:
            fl.close()
        at += 1
    assert at > 5


class _Timer:
    ONE_SHOT = 0

    def init(self, mode, period, callback):
        self.mode, self.period, self.callback = mode, period, callback


def test_a_trial_boot_arms_a_reset_that_connecting_defuses():
    """A new main.py that fails at import leaves a board at the REPL with no Device to count
    the trial time: the timer armed at the trial boot resets it all the same (unless the
    firmware connected first), and that reset is a boot toward the rollback."""
    fl = Flash()
    resets = []
    real = update.reboot
    try:
        fl.stage()
        st = update.read_json(update.STATE)
        st["trial_s"] = 45
        update.write_json(update.STATE, st)
        t = _Timer()
        real_arm = update.arm
        update.arm = lambda s: real_arm(s, t)
        try:
            assert update.boot() == "trial"
        finally:
            update.arm = real_arm
        assert (t.mode, t.period) == (_Timer.ONE_SHOT, 45000)
        update.reboot = lambda: resets.append(1)
        t.callback(t)  # the trial time ran out, still on trial: a reset
        assert resets == [1]
        assert update.connected() is True
        t.callback(t)  # connected first: the timer has nothing to do
        assert resets == [1]
    finally:
        update.reboot = real
        fl.close()


def test_no_timer_here_means_no_trial_reset_armed():
    assert update.arm(30) is None  # CPython and the unix port: no machine.Timer
