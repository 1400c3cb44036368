"""The board tier: the firmware on the real MicroPython rp2 port, an emulated Raspberry Pi
Pico, instead of the unix port (issue 22).

    kit.py     where the emulator and the firmware images are (RP2EMU); one line when not
    pico.py    Pico: one emulated board (Node + rp2040js), its REPL on a free TCP port,
               UART1 dialling a TCP peer, its reboots and their reasons
    repl.py    Repl: a board's REPL as a byte stream (TCP or a pty): the console's lines,
               Ctrl-C, the raw REPL (exec)
    env.py     BoardEnv: the local cloud + a virtual module + a Pico, the firmware deployed
               with `make deploy PORT=socket://...` and running from the board's flash
    longrun.py the long run: 4 KB downlinks for N minutes, the heap watched (make board
               BOARD_MINUTES=10)
Used by host_tests/test_board.py (make board, make test), tools/bench/board.py (make bench)
and tools/harness/vboard.py (make vboard).
"""
