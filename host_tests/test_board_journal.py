# The durable outbox's journal (firmware/journal.py) on the real MicroPython rp2 port, an
# emulated Raspberry Pi Pico (tools/board/) with its littlefs flash: the firmware deployed as
# .mpy, then from the raw REPL: messages appended and one marked done, a record torn the way
# a power cut leaves it, a replay after a soft reset (MicroPython's own, the file system
# mounted again), the segments on flash, and what a full flash does. Without the emulator
# kit the module skips, saying what is missing (as host_tests/test_board.py).
import pytest

from tools.board import kit

try:
    KIT = kit.find(images=("v1.28.0",))
except kit.KitMissing as e:
    pytest.skip(str(e), allow_module_level=True)

from tools.board.env import BoardEnv  # noqa: E402

WRITE = """
import os
from firmware.outbox import Outbox
ob = Outbox(5, "drop_oldest", "/ob")
for i in range(4):
    ob.put("/pk/dn/user/update", '{"seq":%d}' % i)
ob.pop()
ob.journal.close()
f = open("/ob/%08d.jnl" % (ob.journal.segments[-1][0]), "ab")
f.write(b"P\\x09\\x00\\x00\\x00\\x05\\x00")  # a put record cut after 7 bytes
f.close()
print("WROTE", ob.journal.written, sorted(os.listdir("/ob")))
"""

REPLAY = """
import os
from firmware.outbox import Outbox
ob = Outbox(5, "drop_oldest", "/ob")
print("REPLAYED", ob.replayed, [p for _, p in ob._q])
while len(ob):
    ob.pop()
ob.journal.close()
print("LEFT", sorted(os.listdir("/ob")), Outbox(5, "drop_oldest", "/ob").replayed)
"""

FULL = """
import os
from firmware.outbox import Outbox
ob = Outbox(1000, "refuse_new", "/ob2")  # every message kept: the journal grows
blob = "x" * 4000
try:
    for i in range(1000):  # 4 MB: more than the Pico's flash holds (one str, shared in RAM)
        ob.put("/pk/dn/user/update", blob)
        if ob.ram_only:
            break
    print("FULL", len(ob), ob.ram_only, ob.journal_errors)
finally:
    ob.journal.close()
    for n in os.listdir("/ob2"):
        os.remove("/ob2/" + n)
"""


def test_journal_on_the_rp2_port_and_its_littlefs():
    with BoardEnv(KIT, "v1.28.0", run_main=False) as b:
        con = b.console
        con.raw()
        out = con.exec(WRITE)
        assert "WROTE" in out and "'00000001.jnl'" in out, out
        con.soft_reset()
        out = con.exec(REPLAY)
        assert "REPLAYED 3 [b'{\"seq\":1}', b'{\"seq\":2}', b'{\"seq\":3}']" in out, out  # in order, torn one ignored
        assert "LEFT" in out and out.strip().endswith(" 0"), out
        out = con.exec(FULL, timeout=900)
        assert "FULL" in out, out
        n, ram_only, errors = (int(x) for x in out.split("FULL", 1)[1].split()[:3])
        assert ram_only == 1 and errors == 1 and n >= 1, out  # the message kept in RAM, the error counted
