"""Where a downlink's and a QoS 0 publish's CPU goes on the emulated Pico (issue 22): each
piece of the path timed alone with time.ticks_us(), which counts RP2040 cycles at 125 MHz
there (tools/board/pico.py). board.py measures the whole app against the wire time; this
says which piece costs what, for the one who cuts it.

    .venv/bin/python -m tools.bench.board_parts [--json FILE]

The firmware is compiled as `make mpy` does and copied to a fresh Pico's flash (no module on
its UART: the pieces run against an in-memory UART-like whose any() counts, as
machine.UART's does; its own Python read costs are in the figures, so they are upper
bounds). Per piece: microseconds per call, the mean over N calls after a gc.collect().
"""
import sys

if sys.implementation.name == "micropython":  # ----------------------------- on the board
    # <board>
    import gc

    from time import ticks_diff, ticks_us

    def _t(label, f, n=20):
        gc.collect()
        t0 = ticks_us()
        for _ in range(n):
            f()
        print("PART %s %d" % (label, ticks_diff(ticks_us(), t0) // n))

    class _U:
        """Input from a bytearray, `most` bytes per read at most (short reads: the engine's
        hold of a streaming payload does not apply, so every piece is read and parsed);
        writing a command (its CR) makes OK readable."""

        def __init__(self, most=1 << 20):
            self.rx = b""
            self.pos = 0
            self.most = most

        def any(self):
            return len(self.rx) - self.pos

        def readinto(self, buf, n=None):  # at most `most`: a short read (as from a socket)
            k = min(len(buf) if n is None else n, self.any(), self.most)
            if not k:
                return None
            buf[:k] = memoryview(self.rx)[self.pos:self.pos + k]
            self.pos += k
            return k

        def write(self, b):
            if b[-1:] == b"\r":
                self.rx = b"\r\nOK\r\n"
                self.pos = 0
            return len(b)

    def _parts():
        from firmware import app, log
        from firmware.air72x import Air72x, topic_name
        from firmware.at import AT, escape

        log.sink = lambda line: None
        got = [0]

        def count(a, b):
            got[0] += 1

        topic = "/a1DemoPk001/demo-device/user/get"
        for size in (64, 1024):
            item = b'\r\n+MSUB: "' + topic.encode() + b'",' + str(size).encode() + b" byte," + b"x" * size + b"\r\n"
            for most, how in ((1 << 20, "one read"), (64, "64 B reads")):
                for layer in ("engine", "driver"):
                    u = _U(most)
                    if layer == "engine":
                        x = AT(u)
                        x.counted(b"+MSUB", b"byte,", 4200)
                        x.on(b"+MSUB", count)
                    else:
                        x = Air72x(u)
                        x.on_message = count
                    u.rx = item * 10
                    got[0] = 0
                    gc.collect()
                    t0 = ticks_us()
                    while got[0] < 10:
                        x.poll()
                    print("PART %d B downlink, %s (%s) %d" % (size, layer, how, ticks_diff(ticks_us(), t0) // 10))
            body = b"x" * size
            _t("%d B downlink: the demo's log line (made, not written)" % size,
               lambda body=body: app.App.log_downlink(None, topic, body))
            _t("%d B downlink: printable()" % size, lambda body=body: app.printable(body))
        u = _U()
        _t("idle poll: engine", AT(u).poll)
        m = Air72x(u)
        _t("idle poll: driver", m.poll)
        m.version_number = 409
        m.mqtt_connected = True
        up = "/a1DemoPk001/demo-device/user/update"
        payload = '{"seq": 1234, "uptime_s": 56}'
        _t("QoS 0 publish: topic_name() (at.quoted)", lambda: topic_name(up))
        _t("QoS 0 publish: check_publish()", lambda: m.check_publish(up, payload, 0))
        _t("QoS 0 publish: escape()", lambda: escape(payload.encode()))
        _t("QoS 0 publish: mqtt_publish(), OK at once", lambda: m.mqtt_publish(up, payload, 0))
        _t("at.cmd('AT'), OK at once", lambda: m.at.cmd("AT"))
        print("DONE")

    _parts()
    # </board>
    sys.exit(0)

# ---------------------------------------------------------------------------- host side
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import shutil  # noqa: E402

from tools.bench.common import board_text, figures, parser, say  # noqa: E402
from tools.board import kit as kitmod  # noqa: E402
from tools.board.pico import Pico  # noqa: E402
from tools.harness.build import compile_mpy  # noqa: E402
from tools.proc import which  # noqa: E402

IMAGE = "v1.28.0"


def measure():
    """[(piece, us per call)], or {"skipped": why} without the kit."""
    try:
        kit = kitmod.find(images=(IMAGE,))
    except kitmod.KitMissing as e:
        return {"skipped": str(e)}
    code = "import sys\n" + board_text(os.path.abspath(__file__))
    mpy = tempfile.mkdtemp(prefix="bench-parts-")
    try:
        compile_mpy(mpy)
        with Pico(kit, IMAGE) as pico:
            subprocess.run([which("mpremote") or "mpremote", "connect", pico.port, "fs", "cp", "-r",
                            os.path.join(mpy, "firmware"), ":"], check=True, capture_output=True, timeout=600)
            with pico.repl() as con:
                con.raw()
                con.soft_reset()
                out = con.exec(code, timeout=900)
    finally:
        shutil.rmtree(mpy, ignore_errors=True)
    parts = []
    for line in out.splitlines():
        if line.startswith("PART "):
            label, _, us = line[5:].rpartition(" ")
            parts.append((label, int(us)))
    return {"image": IMAGE, "parts": parts}


def findings(res):
    rows = ["| piece (emulated Pico, %s) | us per call |" % res.get("image", IMAGE), "|---|---|"]
    rows += ["| %s | %d |" % (label, us) for label, us in res.get("parts", ())]
    return "\n".join(rows)


def main(argv=None):
    ap = parser(__doc__, "(no effect)")
    a = ap.parse_args(argv)
    with figures(a.json) as result:
        result.update(measure())
        say(result.get("skipped") or findings(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
