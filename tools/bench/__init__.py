"""The benchmarks of issue #9 (`make bench` = python -m tools.bench, __main__.py): figures,
not tests; nothing here fails CI. The firmware always runs under the real `micropython`.

    at.py        receive path of the AT engine (runs under micropython)
    sign.py      one Aliyun sign, hashlib and pure Python (runs under micropython)
    memory.py    the smallest heap the app runs in, and where the memory goes
    wire.py      publish rate against the limit of the bytes on a paced UART
    connect.py   power-up to subscribed against the module's own delays
    common.py    what the host-side ones share (command line, firmware + cloud, --json)
memory.py and wire.py are also their own micropython half (a profile, a driver): the top
of each file runs under micropython and stops there. This file is imported under
micropython too (python -m): it must stay plain.
"""
