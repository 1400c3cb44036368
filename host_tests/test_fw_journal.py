# The outbox's journal on flash (firmware/journal.py, firmware/outbox.py with a folder), with
# real files: replay order, a power cut at every byte of a record (put and done), a corrupt
# record, segments rolled and deleted, the bytes written per message, the outbox bound and
# policies across a restart, and a flash that is full mid-write. Runs under CPython and
# MicroPython.
import os
import struct
from binascii import crc32

import fwtest
from fwtest import capture_log, release_log, rmtree

from firmware import journal as jmod
from firmware.journal import Journal
from firmware.outbox import Outbox


def tmpdir():
    return fwtest.tmpdir("journal")


def listing(d):
    return sorted(os.listdir(d))


def size(path):
    return os.stat(path)[6]


def put_record(seq, topic, payload):
    """A put record as the format in firmware/journal.py says, built here independently."""
    head = b"P" + struct.pack("<IHH", seq, len(topic), len(payload)) + topic + payload
    return head + struct.pack("<I", crc32(head))


def done_record(seq):
    head = b"D" + struct.pack("<I", seq)
    return head + struct.pack("<I", crc32(head))


def fresh(d, segment):
    """A journal in a new folder d/ob, replayed (nothing waiting)."""
    j = Journal(d + "/ob", segment)
    assert j.replay() == []
    return j


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_records_are_the_documented_bytes_and_replay_in_order():
    d = tmpdir()
    try:
        j = Journal(d + "/ob")
        assert j.replay() == []  # the folder is made
        assert j.put("/a/b/user/update", '{"n":1}') == 1
        assert j.put("/a/b/user/update", b"\x00\x01bin") == 2
        assert j.put("t", "three") == 3
        j.mark_done(1)
        j.close()
        assert listing(d + "/ob") == ["00000001.jnl"]
        with open(d + "/ob/00000001.jnl", "rb") as f:
            data = f.read()
        assert data == (put_record(1, b"/a/b/user/update", b'{"n":1}') + put_record(2, b"/a/b/user/update", b"\x00\x01bin")
                        + put_record(3, b"t", b"three") + done_record(1))
        j2 = Journal(d + "/ob")
        assert j2.replay() == [(2, "/a/b/user/update", b"\x00\x01bin"), (3, "t", b"three")]
        assert j2.put("t", "four") == 4  # numbering goes on
        j2.close()
        assert listing(d + "/ob") == ["00000001.jnl", "00000002.jnl"]  # a boot starts a new segment
        assert [p[0] for p in Journal(d + "/ob").replay()] == [2, 3, 4]
    finally:
        rmtree(d)


def _cut_every_byte(last):
    """Two whole records, then `last` cut at every length: what replays."""
    d = tmpdir()
    try:
        first = put_record(1, b"t", b"one") + put_record(2, b"t", b"two")
        seen = []
        for cut in range(len(last) + 1):
            rmtree(d + "/ob")
            os.mkdir(d + "/ob")
            write(d + "/ob/00000001.jnl", first + last[:cut])
            j = Journal(d + "/ob")
            got = j.replay()
            # the journal goes on working after a torn record: a new segment, nothing lost
            seq = j.put("t", "after")
            j.close()
            again = Journal(d + "/ob").replay()
            assert again == got + [(seq, "t", b"after")], (cut, again)
            seen.append([p[0] for p in got])
        return seen
    finally:
        rmtree(d)


def test_a_power_cut_at_every_byte_of_a_put_record():
    last = put_record(3, b"/pk/dn/user/update", b'{"seq":3,"uptime_s":12}')
    seen = _cut_every_byte(last)
    assert seen[:-1] == [[1, 2]] * len(last)  # every torn length: ignored, the others intact
    assert seen[-1] == [1, 2, 3]  # the whole record: replayed


def test_a_power_cut_at_every_byte_of_a_done_record():
    seen = _cut_every_byte(done_record(1))
    assert seen[:-1] == [[1, 2]] * 9  # a torn done mark: the message is sent again (at least once)
    assert seen[-1] == [2]


def test_a_corrupt_record_ends_its_file_only():
    d = tmpdir()
    try:
        os.mkdir(d + "/ob")
        bad = bytearray(put_record(2, b"t", b"two"))
        bad[12] ^= 0x01  # one bit of the payload
        write(d + "/ob/00000001.jnl", put_record(1, b"t", b"one") + bytes(bad) + put_record(3, b"t", b"three"))
        write(d + "/ob/00000002.jnl", put_record(4, b"t", b"four"))
        assert [p[0] for p in Journal(d + "/ob").replay()] == [1, 4]
    finally:
        rmtree(d)


def test_bytes_written_per_message_and_segments_deleted_when_done():
    d = tmpdir()
    try:
        j = fresh(d, 512)
        topic, payload = "/pk/dn/user/update", '{"seq":1234,"uptime_s":56789}'
        n = 200
        most = 0
        for _ in range(n):
            seq = j.put(topic, payload)
            j.mark_done(seq)  # its PUBACK
            most = max(most, len(listing(d + "/ob")))
        per = 13 + len(topic) + len(payload) + 9
        assert j.written == n * per  # appended only: the message once, then a 9-byte done mark
        assert most <= 2  # a full segment is deleted once all it holds is done
        assert listing(d + "/ob") == [f.rsplit("/", 1)[1] for f in j.files()]
        assert len(j.files()) == 1 and size(j.files()[0]) <= 512
        j.close()
        assert Journal(d + "/ob").replay() == []
    finally:
        rmtree(d)


def test_segments_of_pending_messages_stay_until_done_oldest_first():
    d = tmpdir()
    try:
        j = fresh(d, 100)
        for i in range(6):
            j.put("t", "m%d" % i + "x" * 40)  # 57 bytes: one record per segment
        assert len(listing(d + "/ob")) == 6
        j.mark_done(3)
        assert len(listing(d + "/ob")) == 3  # segments 1-3 held only done messages
        j.close()
        assert [p[2][:2] for p in Journal(d + "/ob").replay()] == [b"m3", b"m4", b"m5"]
    finally:
        rmtree(d)


def _outbox(d, size=3, policy="drop_oldest"):
    return Outbox(size, policy, d + "/ob")


def test_outbox_survives_a_restart_in_order_and_removes_only_after_puback():
    d = tmpdir()
    try:
        ob = _outbox(d, 5)
        for i in range(4):
            assert ob.put("t/%d" % i, "m%d" % i)
        assert ob.peek() == ("t/0", "m0")
        ob.pop()  # m0's PUBACK
        ob.journal.close()  # the board resets (nothing else is written at a power cut)
        ob2 = _outbox(d, 5)
        assert ob2.replayed == 3 and len(ob2) == 3
        assert [ob2.pop() for _ in range(3)] == [("t/1", b"m1"), ("t/2", b"m2"), ("t/3", b"m3")]
        ob2.journal.close()
        assert len(_outbox(d, 5)) == 0
    finally:
        rmtree(d)


def test_outbox_bound_and_policies_hold_across_a_restart():
    d = tmpdir()
    capture_log()  # the drops are logged (test_fw_outbox.py checks the lines)
    try:
        ob = _outbox(d, 3, "drop_oldest")
        for i in range(5):
            ob.put("t", "m%d" % i)
        assert ob.dropped == 2
        ob.journal.close()
        ob = _outbox(d, 3, "refuse_new")
        assert [p for _, p in ob._q] == [b"m2", b"m3", b"m4"]
        assert not ob.put("t", "m5") and ob.dropped == 1  # refused: never journaled
        ob.journal.close()
        ob = _outbox(d, 2)  # a smaller outbox after the update: the oldest goes, counted
        assert ob.dropped == 1 and [p for _, p in ob._q] == [b"m3", b"m4"]
        ob.journal.close()
        assert [p for _, p in _outbox(d, 3)._q] == [b"m3", b"m4"]
    finally:
        release_log()
        rmtree(d)


class _FullFlash:
    """A file whose writes stop after `room` bytes: OSError 28 (ENOSPC), the record torn."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, b):
        if len(b) > self.room:
            self.f.write(b[: self.room])
            self.room = 0
            self.f.flush()
            raise OSError(28)
        self.room -= len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def test_a_full_flash_keeps_the_message_in_ram_and_says_so():
    d = tmpdir()
    cap = capture_log()
    room = [1 << 20]
    real = open
    try:
        jmod.open = lambda p, m="r": _FullFlash(real(p, m), room[0])
        ob = _outbox(d, 10)
        assert ob.put("t", "m0")
        room[0] = 0  # the flash is full from the next segment on
        ob.journal.close()
        ob.journal._f = None
        assert ob.put("t", "m1")  # the open itself succeeds, the write does not
        assert ob.ram_only == 1 and ob.journal_errors == 1 and len(ob) == 2
        assert any("journal: cannot write" in line and "kept in RAM only" in line for line in cap.lines)
        room[0] = 5  # a write torn after 5 bytes
        assert ob.put("t", "m2")
        assert ob.ram_only == 2
        room[0] = 1 << 20  # room again: the next message is journaled, in a new segment
        assert ob.put("t", "m3")
        assert ob.ram_only == 2 and ob.journal_errors == 2
        assert [ob.peek()[1], len(ob)] == ["m0", 4]
        assert ob.pop() == ("t", "m0") and ob.pop() == ("t", "m1")  # sent as usual
        ob.journal.close()
        del jmod.open
        ob2 = _outbox(d, 10)  # after a restart: the journaled ones, the torn record ignored
        assert [(t, p) for t, p in ob2._q] == [("t", b"m3")]
    finally:
        if "open" in jmod.__dict__:
            del jmod.open
        release_log()
        rmtree(d)


def test_an_unusable_folder_is_an_error_not_a_crash():
    d = tmpdir()
    cap = capture_log()
    try:
        write(d + "/file", b"x")
        ob = Outbox(3, "drop_oldest", d + "/file/ob")  # a folder inside a file: cannot exist
        assert ob.journal_errors == 1 and len(ob) == 0
        assert ob.put("t", "m") and ob.ram_only == 1 and len(ob) == 1
        assert sum(1 for line in cap.lines if "outbox: journal:" in line) == 2
    finally:
        release_log()
        rmtree(d)


def test_config_fields_are_checked_and_the_folder_sits_beside_config_json():
    from firmware import config

    base = {"product_key": "a1Pk", "device_name": "dev-1", "device_secret": "s3cretValue", "tls_verify": False}

    def check(path="config.json", **kw):
        c = dict(base)
        c.update(kw)
        return config.check(c, path)

    assert check()["outbox_persist"] is False
    assert check()["outbox_dir"] == "outbox"
    assert check("/flash/config.json")["outbox_dir"] == "/flash/outbox"
    assert check(outbox_dir="/data/ob")["outbox_dir"] == "/data/ob"
    for field, value, words in (("outbox_persist", 1, "is not true or false"),
                                ("outbox_dir", "", "not a non-empty string"),
                                ("outbox_dir", "a b", "holds ' '"),
                                ("outbox_dir", 'x"y', "holds '\"'"),
                                ("outbox_dir", "/", "not a folder of its own"),
                                ("outbox_dir", ".", "not a folder of its own")):
        try:
            check(**{field: value})
        except config.ConfigError as e:
            assert e.field == field and words in str(e), (field, value, str(e))
        else:
            raise AssertionError("%s=%r accepted" % (field, value))
