# Run under micropython by test_e2e.py (cwd = a work dir with config.json): bring the
# module and the MQTT link up with the driver and the flows directly, publish each payload
# listed in publish.txt (lines "<qos>:<hex>"), and print one result line per publish.
from firmware import aliyun, config
from firmware.air72x import Air72x
from firmware.uart import open_uart

cfg = config.load()
modem = Air72x(open_uart(cfg["uart"]))
modem.start()
topics = aliyun.Topics(cfg["product_key"], cfg["device_name"])
aliyun.connect(modem, cfg, topics)
print("CONNECTED")
with open("publish.txt") as f:
    jobs = f.read().split()
for job in jobs:
    qos, hexdata = job.split(":")
    payload = bytes.fromhex(hexdata)
    try:
        modem.mqtt_publish(topics.update, payload, int(qos))
        print("PUBLISHED", len(payload))
    except ValueError as e:
        print("REFUSED", e)
print("DONE")
