# Aliyun IoT over a Luat/AirM2M Cat.1 module (Air724UG, Air780E family): MicroPython firmware package.
# The firmware version: its one home (reported to /ota/device/inform on every connect).
__version__ = "1.2.0"
