# Aliyun IoT over an Air72x (Air724UG) Cat.1 module: MicroPython firmware package.
# The firmware version: its one home (reported to /ota/device/inform on every connect).
__version__ = "1.1.0"
