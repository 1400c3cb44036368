# End to end, issue 25: the durable QoS 1 outbox ("outbox_persist": true). The real firmware
# (main.py under micropython) queues telemetry while the module has no SIM, the board loses
# power (the process is killed), and after the restart with the SIM back every message of
# the first run reaches the cloud, in order and before the new ones; once all have their
# PUBACK the journal on the board's flash holds nothing waiting.
import json
import os
import re
import time

from firmware.journal import Journal
from tools.harness.env import SimEnv


def test_queued_messages_survive_a_power_cut(cloud):
    with SimEnv(cloud=cloud, cfg={"outbox_persist": True}, vm={"sim": False}) as env:
        fw = env.firmware
        fw.wait_log("app: telemetry 3 queued", timeout=30)
        fw.stop()  # the board loses power: nothing is closed or flushed by the firmware
        queued = [int(n) for n in re.findall(r"app: telemetry (\d+) queued", fw.text())]
        assert queued == list(range(1, len(queued) + 1)) and len(queued) >= 3
        assert env.uplinks() == []  # nothing was sent: no SIM
        folder = os.path.join(env.workdir, "outbox")
        first = Journal(folder).replay()
        on_flash = [json.loads(p[2])["seq"] for p in first]
        # on flash, in order (one more than logged when the power went between the two)
        assert on_flash[: len(queued)] == queued and len(on_flash) - len(queued) in (0, 1), (on_flash, queued)
        queued = on_flash

        env.vm.sim_inserted()
        fw = env.run_firmware()
        fw.wait_log("outbox: %d message(s) from outbox waiting for their PUBACK" % len(queued), timeout=30)
        fw.wait_log("link: mqtt -> up", timeout=30)
        n = len(queued)
        deadline = time.monotonic() + 30
        while len(env.uplinks()) < n + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        seqs = [json.loads(p)["seq"] for _, p, q in env.uplinks()]
        assert seqs[:n] == queued  # the first run's, replayed in order
        assert seqs[n : n + 2] == [1, 2]  # then the new run's own
        assert all(q == 1 for _, _, q in env.uplinks())
        fw.stop()
        left = Journal(folder).replay()  # at most the newest, still waiting when the power went
        assert len(left) <= 2 and not {p[2] for p in left} & {p[2] for p in first}
        assert len(os.listdir(folder)) <= 3  # the done segments are deleted
        assert "Traceback" not in fw.text()
