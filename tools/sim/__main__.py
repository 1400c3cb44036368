"""`python -m tools.sim`: a virtual module (an Air724UG unless --personality says another
family) on a TCP port until SIGTERM or Ctrl-C; prints its socket:// URL first (pyserial's
serial_for_url and the firmware's UART config take it).

    python -m tools.sim --auth-url http://127.0.0.1:P [--auths-url https://127.0.0.1:P]
                        --mqtt 127.0.0.1:P --mqtts 127.0.0.1:P [--personality air780e]
                        [--baud 115200] [--fault closed@30 ...] [-v]
"""
import argparse
import signal
import sys
import threading

from tools.sim import PERSONALITIES, VirtualModule

def _addr(text):
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def _number(text):
    return float(text) if "." in text else int(text)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.sim", description="A virtual Air724UG / Air780E / Air780EP on a TCP port.")
    ap.add_argument("--personality", choices=sorted(PERSONALITIES), default="air724ug",
                    help="the module family played (default air724ug)")
    ap.add_argument("--auth-url", help="local auth endpoint base, http://127.0.0.1:PORT")
    ap.add_argument("--auths-url", help="its HTTPS twin, https://127.0.0.1:PORT (https:// URLs go there, verified where the family can)")
    ap.add_argument("--mqtt", type=_addr, help="local broker for MIPSTART, HOST:PORT")
    ap.add_argument("--mqtts", type=_addr, help="local TLS broker for SSLMIPSTART, HOST:PORT")
    ap.add_argument("--port", type=int, default=0, help="TCP port to listen on (0: free)")
    ap.add_argument("--baud", type=int, default=0, help="emulated UART speed (0: unpaced)")
    ap.add_argument("--connect-delay", type=float, default=0.0, help="seconds from MIPSTART to CONNECT OK at least")
    ap.add_argument("--reply-delay", type=float, default=0.0, help="seconds before every reply")
    ap.add_argument("--http-delay", type=float, default=0.0, help="seconds an HTTPACTION takes at least")
    ap.add_argument("--idle-close", type=float, default=5.0,
                    help="seconds between CONNECT OK and MCONNECT after which the server closes (0: never)")
    ap.add_argument("--version", default=None, help="AT+CGMR's string or firmware number (default: the family's)")
    ap.add_argument("--no-sim", action="store_true", help="no SIM card: AT+CPIN? answers +CME ERROR (SIM not inserted)")
    ap.add_argument("--attach-after", type=_number, default=None,
                    help="CGATT 0 for N polls (int) or seconds (float); default: the family's")
    ap.add_argument("--imei", default="866714043075174", help="what AT+CGSN answers")
    ap.add_argument("--iccid", default="89860425102180123456", help="what AT+ICCID answers")
    ap.add_argument("--seed", type=int, default=724, help="seed of the module's random choices (bearer IP, garbage faults)")
    ap.add_argument("--fault", action="append", default=[], metavar="KIND@SECONDS",
                    help="schedule a fault, e.g. closed@30 (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the UART traffic")
    a = ap.parse_args(argv)
    extra = {} if a.attach_after is None else {"attach_after": a.attach_after}
    vm = VirtualModule(personality=a.personality, auth_url=a.auth_url, auths_url=a.auths_url,
                       mqtt_addr=a.mqtt, mqtts_addr=a.mqtts, baud=a.baud,
                       port=a.port, version=a.version, sim=not a.no_sim,
                       imei=a.imei, iccid=a.iccid, seed=a.seed,
                       reply_delay=a.reply_delay, connect_delay=a.connect_delay,
                       http_delay=a.http_delay, idle_close=a.idle_close, **extra)
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
