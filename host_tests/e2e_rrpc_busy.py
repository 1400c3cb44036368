# A busy device for host_tests/test_e2e_shadow.py: QoS 1 messages published back to back
# (so RRPC requests often arrive while a publish waits for the module) and an RRPC handler
# that echoes the request. Its answers must still reach the caller inside the 8 s.
from firmware.device import Device

dev = Device()
dev.on_rrpc = lambda payload: b"echo:" + payload
n = [0]


def every():
    if dev.up and dev.stats()["outbox"] < 3:
        n[0] += 1
        dev.publish("user/update", '{"n": %d, "pad": "%s"}' % (n[0], "x" * 400))


dev.on_up = lambda: print("busy: up")
dev.run(every=every)
