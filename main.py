# main.py: runs after boot.py on every reset (and as `micropython main.py` on a PC).
# Everything lives in firmware/app.py; this file only starts it.
from firmware import app

app.main()
