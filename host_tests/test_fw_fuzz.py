# The receive-path fuzz of issue 19, short run: a few hundred seeded streams against the
# real AT engine and the Air72x driver, under CPython and MicroPython alike (fuzzgen.py is
# the generator, the reference model and the checks; `make fuzz` is the long run). A
# failure names the property, the seed that reproduces it and a shrunk minimal stream.
import fuzzgen
from fuzzgen import Rng, digest, garbage, lines_of, run_many, stream_for, stream_seed, tail

SEED = 19


def _run(mode, count):
    rep = run_many(SEED, count, mode)
    assert not rep.failed(), rep.text(shrink_budget=60)
    assert rep.commands > count and rep.downlinks > count, rep.summary()  # the streams did something


def test_driver_streams():
    _run("driver", 100)


def test_engine_streams():
    _run("engine", 120)


def test_same_streams_under_both_interpreters():
    # the generator's own PRNG: these CRCs of what three engine streams send hold under
    # CPython and MicroPython (engine streams: no driver constant changes them)
    got = [digest(stream_for(stream_seed(7, i), "engine")) for i in range(3)]
    assert got == [1905467457, 3588339089, 3970132632], got


def test_garbage_can_never_hold_a_frame():
    # every line a reader could cut from garbage (at LF, or at CR) starts with a byte no
    # frame, final, prompt, echo or URC starts with, once leading NUL/0xFF noise is skipped
    rng = Rng(5)

    class Ctx:
        rxbuf = 128

    for _ in range(300):
        data = garbage(rng, Ctx) + tail(rng)
        assert b"\n+" not in data and b"\rOK" not in data and b"\nOK" not in data, data
        for line in lines_of(data):
            i = 0
            while i < len(line) and line[i] in (0, 255):
                i += 1
            assert i == len(line) or line[i] in fuzzgen.LOW, line


def test_the_checks_catch_broken_receive_paths():
    # each property can fail: a handler that hands a downlink out twice, link events lost,
    # counted payloads read as lines, an engine clock at half speed
    for sabotage, mode, prop in (("dup", "driver", "delivery"), ("no_events", "driver", "events"),
                                 ("no_counted", "engine", "delivery"), ("no_counted", "driver", "answer"),
                                 ("slow_clock", "engine", "deadline"), ("slow_clock", "driver", "clock")):
        rep = run_many(11, 20, mode, sabotage=sabotage)
        assert prop in rep.order, (sabotage, mode, rep.summary())
