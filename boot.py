# boot.py: runs on every board reset before main.py. Kept minimal on purpose: the app,
# its config and its recovery all live in main.py and firmware/.
