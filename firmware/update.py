# The update's boot half (docs/ota.md): boot.py calls boot() on every reset, before the app.
# With nothing staged it is one os.stat. Otherwise the marker (ota/state, written atomically)
# says how far the apply came, and every phase can be run again from its start after a power
# cut at any moment:
#   unpack    ota/pkg -> firmware.new/ (+ main.py.new, boot.py.new), each file read back
#             and checked against the manifest's sha256; a bad package: nothing is replaced
#   swap      firmware -> firmware.old, firmware.new -> firmware, main.py.new -> main.py
#             (the old top files copied into firmware.old first): what is there decides
#             which rename is next, so the device runs the old firmware or the whole new one
#   trial     the boots of the new firmware are counted; connected() (the link is up) keeps
#             it; more than `tries` boots without that: rollback. Each trial boot arms a
#             one-shot machine.Timer that resets the board after `trial_s` unless the marker
#             left the trial by then: so a new main.py that fails at import (a board left at
#             the REPL, with no Device to count the time) is still reset and rolled back
#   rollback  firmware -> firmware.bad, firmware.old -> firmware, its top files back
# What an update came to (a refused package, a rollback) waits in ota/result for
# firmware/ota.py to report on the next connect. Package format: docs/ota.md.
import json
import os

from firmware.port import const, hexlify

MAGIC = b"AOTA1\n"
DIR = "firmware"
NEW = "firmware.new"
OLD = "firmware.old"
BAD = "firmware.bad"
STAGE = "ota"
PKG = "ota/pkg"  # the downloaded package
STATE = "ota/state"  # the marker
RESULT = "ota/result"  # an outcome still to report
TOP = ("main.py", "boot.py")  # files outside firmware/ a package may carry
REBOOT_EXIT = const(75)  # a PC's exit status for "reset me" (the harness starts it again)
_MANIFEST_MAX = const(8192)
BUF = const(1024)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def write_json(path, obj):
    """Whole or not at all: a temporary file renamed over the old one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj))
    os.rename(tmp, path)


def remove(path):
    """A file or a folder (one level of files, as firmware/ is) gone; no error if absent."""
    try:
        names = os.listdir(path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for n in names:
        remove(path + "/" + n)
    os.rmdir(path)


def hash_file(path, h, buf):
    """Hex digest of the file by hashlib-like `h`, read through `buf` (no whole-file copy)."""
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return hexlify(h.digest()).decode()


def manifest(f):
    """(version, [[name, size, sha256 hex]]) from a package open at its start, which is
    then at its first file. ValueError naming what is wrong."""
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an update package")
    line = f.readline(_MANIFEST_MAX)
    if not line.endswith(b"\n"):
        raise ValueError("manifest over %d bytes or cut" % _MANIFEST_MAX)
    m = json.loads(line)
    version, files = m.get("version"), m.get("files")
    if not isinstance(version, str) or not version or not isinstance(files, list):
        raise ValueError("manifest without a version or files")
    init = False
    for e in files:
        if not isinstance(e, list) or len(e) != 3 or not isinstance(e[0], str) or type(e[1]) is not int or e[1] < 0:
            raise ValueError("manifest entry %r" % (e,))
        name = e[0]
        if name not in TOP and (not name.startswith("firmware/") or "/" in name[9:] or name[9:] in ("", ".", "..")):
            raise ValueError("file name %r" % name)
        init = init or name in ("firmware/__init__.mpy", "firmware/__init__.py")
    if not init:
        raise ValueError("no firmware/__init__ (the version's home)")
    return version, files


def _dest(name):
    return name + ".new" if name in TOP else NEW + name[8:]


def _unpack(st):
    from hashlib import sha256

    remove(NEW)
    os.mkdir(NEW)
    buf = bytearray(BUF)
    mv = memoryview(buf)
    top = []
    try:
        with open(PKG, "rb") as f:
            version, files = manifest(f)
            if version != st["version"]:
                raise ValueError("package holds %s, not %s" % (version, st["version"]))
            for name, size, digest in files:
                dst = _dest(name)
                with open(dst, "wb") as out:
                    while size:
                        n = f.readinto(mv[: min(size, BUF)])
                        if not n:
                            raise ValueError("package cut short in %s" % name)
                        out.write(mv[:n])
                        size -= n
                if hash_file(dst, sha256(), buf) != digest:
                    raise ValueError("%s: digest mismatch" % name)
                if name in TOP:
                    top.append(name)
    except (OSError, ValueError) as e:  # a bad package, a full flash: the old firmware stays
        finish(st, -3 if isinstance(e, ValueError) else -4, "unpack: %s" % e)
        for name in TOP:
            remove(name + ".new")
        remove(NEW)
        return False
    st["top"] = top
    return True


def _install(src, keep):
    """src becomes the firmware folder, the one there now becomes keep (an older keep goes).
    Each rename is atomic; run again after a power cut it goes on from where it was."""
    if exists(src):
        if exists(DIR):
            remove(keep)
            os.rename(DIR, keep)
        os.rename(src, DIR)


def _swap(st):
    _install(NEW, OLD)
    for name in st["top"]:
        if exists(name + ".new"):
            if exists(name) and exists(OLD):  # the old one kept for a rollback
                with open(name, "rb") as src, open(OLD + "/" + name, "wb") as dst:
                    dst.write(src.read())
            os.rename(name + ".new", name)


def _rollback(st):
    _install(OLD, BAD)
    for name in st.get("top", ()):
        if exists(DIR + "/" + name):
            os.rename(DIR + "/" + name, name)
    remove(BAD)


def finish(st, step, desc):
    """The update is over: its outcome waits in ota/result, then the marker goes."""
    write_json(RESULT, {"step": step, "desc": desc, "version": st["version"]})
    remove(STATE)
    remove(PKG)


def _phase(st, phase):
    st["phase"] = phase
    write_json(STATE, st)
    return phase


def boot():
    """Take the staged update one phase at a time, as far as it goes this boot. Returns
    the phase it stopped in ("trial", or None: nothing pending; "unpack" means refused)."""
    st = read_json(STATE)
    if st is None:
        return None
    phase = st.get("phase")
    if phase == "unpack":
        if not _unpack(st):
            return "unpack"
        phase = _phase(st, "swap")
    if phase == "swap":
        _swap(st)
        remove(PKG)
        st["boots"] = 0
        phase = _phase(st, "trial")
    if phase == "trial":
        st["boots"] = st.get("boots", 0) + 1
        if st["boots"] <= st.get("tries", 3):
            write_json(STATE, st)
            arm(st.get("trial_s", 600))
            return phase
        phase = _phase(st, "rollback")
    if phase == "rollback":
        _rollback(st)
        finish(st, -1, "firmware %s did not connect in %d boots: back to %s" % (st["version"], st.get("tries", 3), st.get("from")))
        return phase
    remove(STATE)  # a marker no phase knows: nothing to resume
    return None


def arm(s, timer=None):
    """The trial's own watchdog: reset the board in s seconds if the firmware is still on
    trial then. timer: a machine.Timer (tests give theirs); none on the unix port or
    CPython (whoever plays the board restarts a firmware that fails). The callback only
    reads the marker: connected() ends the trial by removing it, nothing to disarm."""
    if timer is None:
        try:
            from machine import Timer  # pyright: ignore[reportMissingImports]
        except ImportError:
            return None
        for tid in (-1, 0):  # rp2: a virtual timer (-1); esp32: hardware timer 0
            try:
                timer = Timer(tid)
                break
            except (ValueError, TypeError, OSError):
                continue
        else:
            return None
    timer.init(mode=timer.ONE_SHOT, period=s * 1000, callback=_expired)
    return timer


def _expired(_t):
    st = read_json(STATE)
    if st is not None and st.get("phase") == "trial":
        print("update: firmware %s not connected in its trial time: resetting" % st.get("version"))
        reboot()


def pending():
    """(a firmware is on trial, an update has work or news for firmware/ota.py)"""
    st = read_json(STATE)
    return bool(st) and st.get("phase") == "trial", exists("ota/job") or exists(RESULT)


def connected():
    """The link is up: a firmware on trial is kept (firmware.old stays until the next
    update). True when one was."""
    st = read_json(STATE)
    if st is None or st.get("phase") != "trial":
        return False
    remove(STATE)
    return True


def reboot():
    """A reset: machine.reset() on a board; elsewhere (the unix port, CPython) the process
    ends with REBOOT_EXIT and whoever plays the board starts it again."""
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        pass
    raise SystemExit(REBOOT_EXIT)
