# main.py: runs after boot.py on every reset (and as `micropython main.py` on a PC).
# Everything lives in firmware/app.py; this file only starts it.
import sys

from firmware import app

if app.main() is None and sys.platform in ("linux", "darwin", "win32"):
    # A PC (the unix port, CPython): a config.json or UART that cannot work is exit status 1.
    # Not on a board: there SystemExit is a soft reset (MicroPython 1.24 on), which would run
    # this file again and again; the board stays at the REPL with the error above it.
    sys.exit(1)
