# Aliyun IoT over an Air72x (Air724UG) Cat.1 module: MicroPython firmware package.
