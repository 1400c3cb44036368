"""The end-to-end harness: the worlds wired together around the real firmware, which runs
under the `micropython` unix port as it would on a board. Above tools/sim/ (the module),
tools/cloud/ (the platform) and the firmware; used by the end-to-end tests, `make sim`,
the soak and the benchmarks.

    env.py      SimEnv: local cloud + virtual module + main.py in a work dir that plays the
                board's flash (Firmware: the interpreter and its log)
    build.py    the firmware compiled as a board imports it: .mpy files, a ROMFS image
    demo.py     `make sim`: both auth flows end to end, each step named, a summary
    soak.py     randomised faults until N messages went through; the loss table
    vboard.py   a virtual board for mpremote (`make vboard`, the deploy tests)
"""
