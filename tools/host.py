#!/usr/bin/env python3
"""Host mode: the same firmware on a PC, against a real Air724UG on a USB-serial adapter
(pyserial) or anything reachable as a socket:// URL (the virtual module, ser2net).

    python tools/host.py --port /dev/ttyUSB0 [--baud 115200] [--config config.json]
    python tools/host.py --url socket://127.0.0.1:7000
    python tools/host.py --port /dev/ttyUSB0 --diag          # report() then check()
    python tools/host.py --port /dev/ttyUSB0 --at AT+CSQ     # one command, raw reply
    python tools/host.py --port /dev/ttyUSB0 --bridge        # type AT commands, Ctrl-] leaves

--port/--url replace config["uart"]; everything else comes from the config file.
A URL where nothing listens yet, or an adapter not plugged in, is tried again (one line each
time) until it opens or --seconds pass. Exit status: 0; 1 when --diag found a failing step or
the UART did not open; 2 for a bad config.
"""
import argparse
import sys
import time


from firmware import config


def load(args):
    cfg = config.load(args.config)
    target = args.url or args.port
    if target:
        cfg["uart"] = {"url": target, "baud": args.baud}
        if args.flow:
            cfg["uart"]["flow"] = True
        config.check(cfg, "--url/--port/--baud")
    elif "url" not in cfg["uart"]:
        raise config.ConfigError("%s: uart: a board's UART pins; on a PC give --port /dev/ttyUSB0 "
                                 "(or --url socket://host:port)" % args.config, "uart")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.host", description="Run the firmware on a PC against a module on a serial port or socket URL.")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--port", help="serial device of the USB-serial adapter (/dev/ttyUSB0, COM3)")
    where.add_argument("--url", help="socket://host:port or any pyserial URL")
    ap.add_argument("--baud", type=int, default=115200, help="the serial port's speed (default 115200)")
    ap.add_argument("--flow", action="store_true", help="RTS/CTS hardware flow control on the serial port")
    ap.add_argument("--config", default="config.json", help="the device's config file (default config.json)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--diag", action="store_true", help="print diag.report() and run diag.check()")
    what.add_argument("--at", metavar="CMD", help="send one AT command and print the reply")
    what.add_argument("--bridge", action="store_true", help="type AT commands to the module (Ctrl-] leaves)")
    ap.add_argument("--no-connect", action="store_true", help="with --diag: stop before the MQTT connect")
    ap.add_argument("--seconds", type=float, help="run the app this long, then stop (default: until Ctrl-C)")
    args = ap.parse_args(argv)
    try:
        cfg = load(args)
    except config.ConfigError as e:
        print("host: %s" % e, file=sys.stderr)
        return 2

    from firmware.uart import UARTError

    if args.diag or args.at or args.bridge:
        from firmware import diag

        diag.use(None, cfg)  # diag opens the UART of cfg["uart"] on first use
        try:
            if args.at:
                diag.at(args.at)
                return 0
            if args.bridge:
                diag.bridge()
                return 0
            diag.report()
            print()
            return 1 if diag.check(connect=not args.no_connect) else 0
        except UARTError as e:
            print("host: %s" % e, file=sys.stderr)
            return 1

    from firmware import log
    from firmware.app import start

    until = None
    if args.seconds is not None:
        end = time.monotonic() + args.seconds
        until = lambda: time.monotonic() >= end  # noqa: E731
    try:
        app = start(cfg, until)  # retries a URL where nothing listens yet
        if app is None:
            return 1
        log.info("host", "device %s/%s on %s, auth %s, %s", cfg["product_key"], cfg["device_name"],
                 cfg["uart"]["url"], cfg["auth"], "TLS" if cfg["tls"] else "TCP")
        app.run(until)
    except KeyboardInterrupt:
        print("stopped. Diagnostics: python tools/host.py --port ... --diag")
    return 0


if __name__ == "__main__":
    sys.exit(main())
