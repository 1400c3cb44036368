# A device that takes RRPC requests and gives no answer (its handler returns None), for
# host_tests/test_e2e_shadow.py: the caller must get TIMEOUT after its timeout.
from firmware.device import Device

dev = Device()
dev.on_rrpc = lambda payload: None
dev.on_up = lambda: print("silent: subscribed")
dev.run()
