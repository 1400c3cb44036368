# main.py: the app (filled in by the driver/flows work).
