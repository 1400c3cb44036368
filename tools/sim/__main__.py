"""`python -m tools.sim`: a virtual Air724UG on a TCP port until SIGTERM or Ctrl-C; prints
its socket:// URL first (pyserial's serial_for_url and the firmware's UART config take it).

    python -m tools.sim --auth-url http://127.0.0.1:P --mqtt 127.0.0.1:P --mqtts 127.0.0.1:P
                        [--baud 115200] [--fault closed@30 ...] [-v]
"""
import argparse
import signal
import sys
import threading

from tools.sim import VirtualModule
from tools.sim.core import Personality

def _addr(text):
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def _number(text):
    return float(text) if "." in text else int(text)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim", description="A virtual Air724UG on a TCP port.")
    ap.add_argument("--auth-url", help="local auth endpoint base, http://127.0.0.1:PORT")
    ap.add_argument("--mqtt", type=_addr, help="local broker for MIPSTART, HOST:PORT")
    ap.add_argument("--mqtts", type=_addr, help="local TLS broker for SSLMIPSTART, HOST:PORT")
    ap.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: free)")
    ap.add_argument("--baud", type=int, default=0, help="emulated UART speed (0: unpaced)")
    ap.add_argument("--connect-delay", type=float, default=0.0)
    ap.add_argument("--reply-delay", type=float, default=0.0)
    ap.add_argument("--http-delay", type=float, default=0.0)
    ap.add_argument("--idle-close", type=float, default=5.0)
    ap.add_argument("--version", default=Personality.default_version)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--attach-after", type=_number, default=0,
                    help="CGATT 0 for N polls (int) or seconds (float)")
    ap.add_argument("--imei", default="866714043075174")
    ap.add_argument("--iccid", default="89860425102180123456")
    ap.add_argument("--seed", type=int, default=724)
    ap.add_argument("--fault", action="append", default=[], metavar="KIND@SECONDS",
                    help="schedule a fault, e.g. closed@30 (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the UART traffic")
    a = ap.parse_args(argv)
    vm = VirtualModule(auth_url=a.auth_url, mqtt_addr=a.mqtt, mqtts_addr=a.mqtts, baud=a.baud,
                       port=a.port, version=a.version, sim=not a.no_sim,
                       attach_after=a.attach_after, imei=a.imei, iccid=a.iccid, seed=a.seed,
                       reply_delay=a.reply_delay, connect_delay=a.connect_delay,
                       http_delay=a.http_delay, idle_close=a.idle_close)
    stop = threading.Event()  # before the URL is announced: a SIGTERM right after it stops cleanly
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    vm.start()
    for f in a.fault:
        kind, _, at = f.partition("@")
        vm.schedule(kind, delay=float(at or 0))
    print(vm.url, flush=True)
    shown = 0
    try:
        while not stop.wait(0.2):
            if a.verbose:
                while shown < len(vm.log):
                    d, b = vm.log[shown]
                    shown += 1
                    sys.stderr.write("%s %r\n" % (d, b))
    except KeyboardInterrupt:
        pass
    vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
