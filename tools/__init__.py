"""Host tools, one folder per world (run from the repository root, `python -m tools.<name>`):

    sim/       the emulated module: a virtual Air724UG on a TCP port      python -m tools.sim
    cloud/     the local cloud: Aliyun's auth endpoint and MQTT broker     python -m tools.cloud
               and its console                                             python -m tools.cloud.console
    harness/   the worlds wired to the real firmware under micropython:
               make sim, the soak, the virtual board for mpremote          python -m tools.harness.demo
    board/     the board tier: the firmware on an emulated Raspberry Pi Pico (the real
               rp2 port) next to the local cloud and a virtual module        make board
    bench/     the benchmarks (make bench)                                 python -m tools.bench
    sign.py    the user's tools: offline credentials and AT script         python -m tools.sign
    deploy.py  ... the firmware onto a board (make deploy)                 python -m tools.deploy
    host.py    ... the firmware on a PC against a real module              python -m tools.host
    proc.py    what every world shares: the repository, the venv's executables, child
               processes, start/stop blocks
Imported under micropython too (python -m tools.bench.at): keep this file plain.
"""
