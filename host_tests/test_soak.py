# A short soak inside `make test` (tools/harness/soak.py): the real firmware under `micropython`,
# the virtual Air724 and the local cloud, every fault kind injected at least once in a
# seeded random order while QoS 1 telemetry flows every 0.05 s. Asserts: no QoS 1 message
# accepted into the outbox is lost (seq 1..N all at the broker; the outbox is sized so the
# policy drops nothing, and the firmware's own drop counter says so), every fault recovered,
# no exception escaped (no Traceback), every downlink sent was received.
import json

from tools.harness import soak


def test_short_soak_every_fault_kind(tmp_path, capsys):
    out, cloud_log = tmp_path / "soak.json", tmp_path / "cloud.log"
    rc = soak.main(["--messages", "300", "--seed", "11", "--interval", "0.05", "--gap", "1.0",
                    "--json", str(out), "--max-seconds", "170", "--cloud-log", str(cloud_log)])
    table = capsys.readouterr().out
    r = json.loads(out.read_text())
    print(table)
    if not r["ok"] or r["broker_lost"]:  # shown by pytest only when an assertion fails
        print("--- local cloud log (tail):\n" + "\n".join(cloud_log.read_text(errors="replace").splitlines()[-150:]))
    assert set(r["faults"]) == set(soak.FAULTS) and min(r["faults"].values()) >= 1, r["faults"]
    assert r["messages"] >= 300, table
    assert r["lost"] == 0 and r["lost_seqs"] == [], table
    # a seq missing at the cloud although the broker PUBACKed it was dropped by the local
    # broker (amqtt sends PUBACK before it processes the message: a kick, restart or crash in
    # between loses it); the firmware did its part. Counted, and rare: at most one per such fault
    assert r["delivered"] + r["broker_lost"] == r["messages"], table
    assert r["broker_lost"] <= sum(r["faults"].get(k, 0) for k in soak.BROKER_SIDE), table
    assert r["dropped_by_policy"] == 0 and r["firmware_stats"]["dropped"] == 0
    judged = r["faults_total"] - len(r["harness_errors"])  # a failed cloud control call: not judged
    assert len(r["harness_errors"]) <= 1, r["harness_errors"]
    assert r["unrecovered"] == [] and r["recovered"] == judged, table
    assert r["tracebacks"] == 0
    assert r["downlinks_sent"] == r["downlinks_received"] == judged, table
    assert r["firmware_stats"]["downlinks"] >= r["downlinks_received"]  # + the app's own replies (thing, NTP)
    # every message the app queued was acked (the last few may still be in flight)
    fw = r["firmware_stats"]
    assert fw["queued"] - fw["acked"] == fw["outbox"] <= 5, fw
    assert fw["sent"] == fw["acked"] + fw["unacked"] + fw["rejected"], fw  # every attempt accounted for
    assert r["duplicates"] <= fw["unacked"], table  # a duplicate only after a lost PUBACK
    assert rc == 0, table
