# The receive-path fuzz of issue 19 driven by hypothesis (CPython only): the same generator
# building blocks and checks as fuzzgen.py's seeded run (test_fw_fuzz.py), but every choice
# is drawn by hypothesis, so a failing stream is shrunk choice by choice to a minimal one.
# Deterministic for CI: derandomized, no example database, no per-example deadline.
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzzgen
from fuzzgen import Cmd, Item, Step, Stream, describe, run_stream

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=100, print_blob=False,
                    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate, Phase.shrink))


class DrawRng:
    """fuzzgen.Rng's interface with every choice drawn from hypothesis. Choices shrink to
    0: the first alternative, the smallest number, "no" for chance()."""

    def __init__(self, data):
        self.data = data

    def next(self):
        return self.data.draw(st.integers(0, 0xFFFFFFFF))

    def below(self, n):
        return self.data.draw(st.integers(0, n - 1)) if n > 1 else 0

    def rand(self, a, b):
        return a + self.below(b - a + 1)

    def chance(self, pct):
        return self.below(100) >= 100 - pct

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def blob(self, alphabet, n):
        if n > 64:  # long runs of bytes from a drawn seed: the choice buffer stays small
            return fuzzgen.Rng(self.next()).blob(alphabet, n)
        raw = self.data.draw(st.binary(min_size=n, max_size=n))
        return bytes(alphabet[b % len(alphabet)] for b in raw)


def _check(stream):
    failures = run_stream(stream)
    assert not failures, "%s: %s (step %d)\n%s" % (failures[0][0], failures[0][2], failures[0][1], describe(stream))


@SETTINGS
@given(st.data())
def test_driver_streams(data):
    _check(fuzzgen.gen_stream(DrawRng(data), "driver", size=6))


@SETTINGS
@given(st.data())
def test_engine_streams(data):
    _check(fuzzgen.gen_stream(DrawRng(data), "engine", size=6))


def _pieces(data, cuts, gaps):
    out = []
    prev = 0
    for c, g in zip(sorted(set(c % (len(data) + 1) for c in cuts)), gaps):
        out += [data[prev:c], g]
        prev = c
    return [p for p in out + [data[prev:]] if p != b""]


@SETTINGS
@given(
    payload=st.binary(max_size=3000),
    topic=st.lists(st.sampled_from(fuzzgen.TOPIC_PARTS), min_size=1, max_size=3).map(b"".join),
    quoted=st.booleans(),
    in_window=st.booleans(),
    rxbuf=st.sampled_from((1536, 128, 256)),
    reads=st.tuples(st.integers(1, 300), st.integers(0, 300)),
    cuts=st.lists(st.integers(0, 4000), max_size=4),
    gaps=st.lists(st.integers(0, 10), min_size=4, max_size=4),
)
def test_any_downlink_arrives_once_and_byte_exact(payload, topic, quoted, in_window, rxbuf, reads, cuts, gaps):
    # one downlink with any payload bytes, cut anywhere with short pauses, read in any
    # sizes, between commands or inside a command's reply; then a clean command
    if not quoted:
        topic = b"/a/b"
    frame = fuzzgen.header(topic, len(payload), quoted) + payload + b"\r\n"
    dl = Item("dl", _pieces(frame, cuts, gaps), msg=(topic, payload))
    signal = Cmd("signal", b"AT+CSQ", info=b"+CSQ", aborts=fuzzgen.MODULE_LOST, ret=(20, 99))
    signal.items = [Item("info", [b"\r\n+CSQ: 20,99\r\n"], line=b"+CSQ: 20,99")] + ([dl] if in_window else []) + [Item("ok", [b"\r\nOK\r\n"])]
    steps = ([] if in_window else [Step("idle", [dl])]) + [Step("cmd", None, signal)]
    cmin = min(reads[0], reads[0] + reads[1])
    _check(Stream(0, "driver", rxbuf, 50, cmin, reads[0] + reads[1], False, 100, 7, steps))
