# boot.py: runs on every board reset before main.py. Kept minimal on purpose: the app,
# its config and its recovery all live in main.py and firmware/. Its one job: a staged
# over-the-air update is applied (or a failed one rolled back) before the app starts
# (firmware/update.py, docs/ota.md). Nothing here may stop the board from booting.
try:
    from firmware import update

    update.boot()
except Exception as e:  # the firmware that is there runs; the error says why not the new one
    print("boot: update: %r" % (e,))
finally:  # firmware/ may be another folder now: main.py imports it afresh
    import sys

    for _m in ("firmware.update", "firmware.port", "firmware"):
        sys.modules.pop(_m, None)
