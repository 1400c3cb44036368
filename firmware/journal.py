# The outbox's journal on flash ("outbox_persist": true): a QoS 1 message written here
# survives a reboot or a power cut until its PUBACK. Loaded only when outbox_persist is on.
#
# Low wear: records are only ever appended, never rewritten. The folder (outbox_dir) holds
# segment files 00000001.jnl, 00000002.jnl, ... oldest first; the newest is the current one.
#   put   "P" seq:u32 topic_len:u16 payload_len:u16 topic payload crc:u32   (13 + t + p bytes)
#   done  "D" seq:u32 crc:u32                                               (9 bytes)
# little-endian; crc is CRC-32 of the record's bytes before it. Every message gets the next
# sequence number; the outbox removes only its head (a PUBACK, or the oldest dropped by the
# policy), so "done seq" means every message up to seq has left. A segment is full at
# `segment` bytes (a new one is started); the oldest segments are deleted, oldest first,
# once every message they hold is done, so the segments on flash always form an unbroken
# run ending at the current one, and a done record is never deleted before the messages it
# covers. Flash in use: the pending messages plus at most one segment of done ones.
#
# A power cut mid-write leaves a torn last record: on replay its length or CRC does not
# check and it is ignored with whatever follows it in that file. So that nothing is ever
# written after a torn record, each boot, and each failed write, starts a new segment.
# A write that fails (flash full or failing) raises OSError: the caller keeps the message
# in RAM (firmware/outbox.py) and says so.
#
# Only a put is flushed at once (on littlefs every flush is a commit, about one 4 KiB sector
# erase: tools/bench/journal.py --board). A done record reaches the flash with the next put
# (or when the segment is closed or rolled): a power cut before that only means those
# messages are sent once more after the restart (QoS 1 is at least once), never one lost.
import os
import struct
from binascii import crc32

from firmware.port import const

_SEGMENT = const(4096)  # bytes per segment file (a few flash pages)
_PUT = const(0x50)  # "P"
_DONE = const(0x44)  # "D"
_HEAD = const(9)  # "P" + seq + topic_len + payload_len
_EXT = ".jnl"


class Journal:
    def __init__(self, folder, segment=_SEGMENT):
        self.dir = folder.rstrip("/") or "/"
        self.segment = segment
        self.written = 0  # bytes appended since start (the wear figure: make bench)
        self.segments = []  # [number, last put seq in it], oldest first; the current one last
        self.done = 0  # every message up to this seq has left the outbox
        self._seq = 0  # the last seq given out
        self._f = None  # the current segment, open for appending (None: start a new one)
        self._size = 0
        self._top = 0  # the highest segment number on flash

    def _path(self, n):
        return "%s/%08d%s" % (self.dir, n, _EXT)

    # ------------------------------------------------------------------ boot
    def replay(self):
        """The messages still waiting, oldest first: [(seq, topic, payload bytes)]. Reads
        every segment; a torn or corrupt record ends its file's replay."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            os.mkdir(self.dir)  # OSError if it cannot be made: the caller says so
            names = []
        nums = sorted(int(n[:-4]) for n in names if n.endswith(_EXT) and n[:-4].isdigit())
        self._top = nums[-1] if nums else 0  # a new segment never reopens an old file
        pending = []
        for n in nums:
            with open(self._path(n), "rb") as f:
                data = f.read()
            last = _parse(data, pending, self)
            self.segments.append([n, last])
        try:
            self._trim()
        except OSError:  # a segment that cannot be deleted now goes with the next done mark
            pass
        return [p for p in pending if p[0] > self.done]

    # ------------------------------------------------------------------ appending
    def put(self, topic, payload):
        """Append a message; its seq. OSError: not written (flash full or failing)."""
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        seq = self._seq + 1
        head = struct.pack("<BIHH", _PUT, seq, len(topic), len(payload))
        crc = crc32(payload, crc32(topic, crc32(head)))
        self._append(_HEAD + len(topic) + len(payload) + 4, head, topic, payload, struct.pack("<I", crc))
        self._seq = seq
        self.segments[-1][1] = seq
        return seq

    def mark_done(self, seq):
        """Every message up to seq has left (PUBACK or dropped): a done record, and the
        oldest segments deleted once all they hold is done. OSError: not written."""
        head = struct.pack("<BI", _DONE, seq)
        self._append(9, head, struct.pack("<I", crc32(head)), sync=False)
        self.done = seq
        self._trim()

    def _append(self, n, *parts, sync=True):
        f = self._f
        if f is None or (self._size and self._size + n > self.segment):
            f = self._roll()
        try:
            for p in parts:
                f.write(p)
            if sync:
                f.flush()  # littlefs commits the file on flush/close: the record is on flash
        except OSError:
            self.close()  # a torn record may be there now: never write after it
            raise
        self._size += n
        self.written += n

    def _roll(self):
        self.close()
        n = self._top + 1
        f = self._f = open(self._path(n), "ab")  # OSError: the flash is full or failing
        self._size = 0
        self._top = n
        self.segments.append([n, 0])
        return f

    def _trim(self):
        segs = self.segments
        while len(segs) > 1 and segs[0][1] <= self.done:  # oldest first, never the current one
            os.remove(self._path(segs[0][0]))
            segs.pop(0)
        if len(segs) == 1 and self._f is None and segs[0][1] <= self.done:
            os.remove(self._path(segs[0][0]))  # a boot's last old segment, all done
            segs.pop(0)

    def close(self):
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def files(self):
        """The segment files on flash now (for tests and the benchmark)."""
        return [self._path(s[0]) for s in self.segments]


def _parse(data, pending, j):
    """Append the put records of one segment's bytes to `pending`; raise j.done and j._seq
    from its records. Returns the last put seq it held (0: none). Stops at the first record
    whose length or CRC does not check (a torn write)."""
    i = 0
    n = len(data)
    last = 0
    mv = memoryview(data)
    while i + 9 <= n:
        kind = data[i]
        if kind == _PUT:
            seq, tl, pl = struct.unpack_from("<IHH", data, i + 1)
            end = i + _HEAD + tl + pl
            if end + 4 > n or crc32(mv[i:end]) != struct.unpack_from("<I", data, end)[0]:
                break
            pending.append((seq, str(data[i + _HEAD : i + _HEAD + tl], "utf-8"), data[i + _HEAD + tl : end]))
            last = seq
            i = end + 4
        elif kind == _DONE:
            if crc32(mv[i : i + 5]) != struct.unpack_from("<I", data, i + 5)[0]:
                break
            seq = struct.unpack_from("<I", data, i + 1)[0]
            if seq > j.done:
                j.done = seq
            i += 9
        else:
            break
        if last > j._seq:
            j._seq = last
        if j.done > j._seq:
            j._seq = j.done
    return last
