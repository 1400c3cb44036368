# The asyncio front (firmware/aio.py) over the real Device, Link, driver and engine on the
# stub UART: a ticker task keeps running while a command waits (the stub's empty reads are
# the module's silence), `await publish()` returns after the PUBACK, a QoS 0 publish waits
# for the supervisor's command instead of being refused, messages() keeps order and counts
# what it drops, a cancelled call frees the engine. Runs under CPython and MicroPython
# (asyncio in both).
import asyncio

from fwtest import StubUART, raises

from firmware import aio, aliyun
from firmware.config import check
from firmware.device import Device
from firmware.link import MQTT, UP

PK, DN = "a1DemoPk001", "demo-device-1"
BASE = "/%s/%s/" % (PK, DN)
OK = b"\r\nOK\r\n"
SILENCE = 40  # empty reads: each is one await of the engine


def mpub(topic, qos, body):
    return b'AT+MPUB="' + (BASE + topic).encode() + b'",%d,0,"' % qos + body + b'"\r'


def msub(topic, payload):
    return b'\r\n+MSUB: "' + (BASE + topic).encode() + b'",%d byte,' % len(payload) + payload + b"\r\n"


def device(script=(), strict=True, queue=16, up=True, **kw):
    cfg = check(dict({"product_key": PK, "device_name": DN, "device_secret": "s" * 32, "ntp": False}, **kw))
    uart = StubUART(script, strict=strict)
    dev = Device(cfg, uart=uart).aio(queue)
    link, m = dev.dev.link, dev.dev.modem
    if up:
        link.state = UP
        m.mqtt_connected = m.bearer_up = True
    m.version, m.version_number = "AirM2M_Air724UG_V409_LTE_AT", 409
    link._last_rx = link._up_since = link._next = link.ticks()
    return dev, uart


class Ticker:
    """A second task: counts its turns (1 ms apart) until stopped."""

    def __init__(self):
        self.n = 0
        self.run = True

    async def loop(self):
        while self.run:
            self.n += 1
            await aio._sleep_ms(1)


def go(coro):
    asyncio.run(coro)


def test_qos1_publish_returns_after_its_puback_and_a_ticker_runs_meanwhile():
    pub = mpub("user/update", 1, b'{\\22t\\22: 1}')
    dev, uart = device([(pub, [OK, SILENCE, b"\r\nPUBACK\r\n"])])
    t = Ticker()
    seen = {}

    async def main():
        dev.start()
        asyncio.create_task(t.loop())
        await aio._sleep_ms(1)
        before = t.n
        ok = await dev.publish("user/update", '{"t": 1}')
        seen["ok"], seen["ticks"] = ok, t.n - before
        seen["pubacks"], seen["outbox"] = dev.dev.modem.pubacks, len(dev.dev.link.outbox)
        t.run = False
        dev.task.cancel()

    go(main())
    assert seen["ok"] is True and seen["pubacks"] == 1 and seen["outbox"] == 0  # PUBACK before the return
    assert seen["ticks"] >= SILENCE // 2  # the other task ran while the module was silent
    assert bytes(uart.written) == pub and uart.done()
    s = dev.stats()
    assert s["sent"] == 1 and s["acked"] == 1 and s["unacked"] == 0


def test_a_refused_qos1_publish_is_false_at_once_and_bad_input_raises():
    dev, uart = device(outbox=1, outbox_policy="refuse_new")
    got = []

    async def main():
        dev.dev.link.outbox.put("/x", "queued")  # the outbox is full
        got.append(await dev.publish("user/update", "b"))
        for bad in ({"t": 1}, 5):
            try:
                await dev.publish("user/update", bad)
            except TypeError:
                got.append("TypeError")
        try:
            await dev.publish("user/update", "x", 2)
        except ValueError:
            got.append("ValueError")

    go(main())
    assert got == [False, "TypeError", "TypeError", "ValueError"]
    assert dev.stats()["dropped"] == 1 and bytes(uart.written) == b""


def test_a_qos1_publish_dropped_by_the_outbox_is_false():
    dev, uart = device(outbox=1, outbox_policy="drop_oldest", up=False)
    got = []

    async def main():
        first = asyncio.create_task(dev.publish("user/update", "old"))
        await aio._sleep_ms(1)  # queued, waiting for its PUBACK
        second = asyncio.create_task(dev.publish("user/update", "new"))
        got.append(await first)  # the second one pushed it out of the full outbox
        second.cancel()

    go(main())
    assert got == [False]
    assert dev.dev.link.outbox.peek() == (BASE + "user/update", "new") and dev.stats()["dropped"] == 1


def test_qos0_waits_for_the_supervisors_command_instead_of_being_refused():
    status = b"AT+MQTTSTATU\r"
    pub = mpub("user/x", 0, b"hi")
    dev, uart = device([(status, [SILENCE, b"\r\n+MQTTSTATU: 1\r\n", OK]), (pub, OK)], strict=False)
    dev.dev.link.status_ms = 0  # every step asks the module: the supervisor is inside a command
    got = []

    async def main():
        dev.start()
        for _ in range(5):
            await aio._sleep_ms(1)
        got.append(dev.dev.modem.busy())  # the supervisor waits for +MQTTSTATU now
        got.append(await dev.publish("user/x", "hi", qos=0))
        dev.task.cancel()

    go(main())
    assert got == [True, True]
    assert bytes(uart.written).startswith(status + pub)  # in turn, never "sent while in flight"
    s = dev.stats()
    assert s["qos0_sent"] == 1 and s["qos0_dropped"] == 0 and s["faults"] == {}


def test_qos0_is_false_while_the_link_is_down():
    dev, uart = device(up=False)
    got = []

    async def main():
        got.append(await dev.publish("user/x", "hi", qos=0))

    go(main())
    assert got == [False] and dev.stats()["qos0_dropped"] == 1 and bytes(uart.written) == b""


def test_messages_in_order_and_overflow_counted():
    dev, uart = device(queue=2)
    got = []

    async def main():
        for i in range(3):
            uart.feed(msub("user/get", b"m%d" % i))
        await dev.step()  # the supervisor's turn takes them in
        async for topic, payload in dev.messages():
            got.append((topic, payload))
            if len(got) == 2:
                break
        uart.feed(msub("user/get", b"m3"))
        waiter = asyncio.create_task(dev.messages().__anext__())
        await aio._sleep_ms(1)
        await dev.step()
        got.append(await waiter)

    go(main())
    assert got == [(BASE + "user/get", b"m1"), (BASE + "user/get", b"m2"), (BASE + "user/get", b"m3")]
    s = dev.stats()
    assert s["messages_dropped"] == 1 and s["messages_queued"] == 0 and s["downlinks"] == 4


def test_handlers_still_take_their_topics_and_what_they_send_waits_for_the_end_of_the_read():
    sub = b'AT+MSUB="' + (BASE + "user/cmd").encode() + b'",0\r'
    answer = mpub("user/reply", 0, b"pong")
    dev, uart = device([(sub, [OK, b"\r\nSUBACK\r\n"]), (answer, OK)])
    got = []

    def on_cmd(topic, payload):
        got.append((payload, bytes(uart.written)))
        dev.dev.publish("user/reply", "pong", 0)  # queued: sent by the step after this read

    async def main():
        dev.subscribe("user/cmd", on_cmd)  # up: the supervisor's step sends it
        uart.feed(msub("user/cmd", b"ping"))
        await dev.step()

    go(main())
    assert got == [(b"ping", b"")]  # nothing is sent from inside the handler
    assert bytes(uart.written) == sub + answer and uart.done()
    assert dev.stats()["qos0_sent"] == 1 and dev.stats()["messages_queued"] == 0


def test_the_supervisor_connects_while_a_ticker_keeps_running():
    dev, uart = device(up=False, tls=False)
    link, m = dev.dev.link, dev.dev.modem
    cid, user, password, host, port = aliyun.credentials(m, dev.dev.cfg)
    subs = [b'AT+MSUB="%s",%d\r' % (t.encode(), q) for t, q in link.subscriptions]  # user/get, OTA
    uart.script = [
        (b"AT+MDISCONNECT\r", [SILENCE, OK]),
        (b"AT+MIPCLOSE\r", [SILENCE, OK]),
        (('AT+MCONFIG="%s","%s","%s"\r' % (cid, user, password)).encode(), [SILENCE, OK]),
        (('AT+MIPSTART="%s",%d\r' % (host, port)).encode(), [OK, SILENCE, b"\r\nCONNECT OK\r\n"]),
        (b"AT+MCONNECT=1,300\r", [OK, SILENCE, b"\r\nCONNACK OK\r\n"]),
        (b"AT+MQTTMSGSET=0\r", [SILENCE, OK]),
    ] + [(sub, [OK, SILENCE, b"\r\nSUBACK\r\n"]) for sub in subs]
    commands = len(uart.script)
    link.state = MQTT
    m.bearer_up = True
    t = Ticker()
    seen = {}

    async def main():
        asyncio.create_task(t.loop())
        dev.start()
        for _ in range(3000):
            if link.state == UP:
                break
            await aio._sleep_ms(1)
        seen["state"], seen["ticks"] = link.state, t.n
        t.run = False
        dev.task.cancel()

    go(main())
    assert seen["state"] == UP and uart.done()
    assert bytes(uart.written).endswith(b"AT+MQTTMSGSET=0\r" + b"".join(subs))
    assert seen["ticks"] >= commands * SILENCE // 2  # it ran through every silence of the connect
    assert dev.stats()["faults"] == {}


def test_a_cancelled_command_frees_the_engine():
    pub = mpub("user/x", 0, b"lost")
    dev, uart = device([(pub, [10000])])  # the module never answers
    got = []

    async def main():
        try:
            await asyncio.wait_for(dev.publish("user/x", "lost", qos=0), 0.05)
        except asyncio.TimeoutError:
            got.append("timeout")
        got.append(dev.dev.modem.busy())

    go(main())
    assert got == ["timeout", False] and bytes(uart.written) == pub


def test_queue_size_is_checked():
    dev, _ = device()
    assert "queue" in str(raises(ValueError, aio.AsyncDevice, dev.dev, 0))


def test_the_sync_wait_raising_is_thrown_into_the_command_which_cleans_up():
    from firmware.at import AT
    from firmware.port import run

    uart = StubUART([(b"AT+CSQ\r", [100, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"])])
    at = AT(uart)

    def interrupted(ms):
        raise KeyboardInterrupt()

    at.sleep = interrupted  # Ctrl-C while the command waits
    raises(KeyboardInterrupt, at.cmd, "AT+CSQ", info=b"+CSQ")
    assert not at.busy()  # the command's own finally ran: the engine takes the next one
    got = []

    def g():
        got.append((yield 7))
        return "done"

    assert run(g(), lambda ms: got.append(ms)) == "done" and got == [7, None]


def test_an_update_chunk_is_awaited_and_the_ticker_runs_through_it():
    dev, uart = device([])

    class Ota:  # stands in for firmware/ota.py: one chunk whose commands wait SILENCE ms
        done = 0

        def poll_g(self):
            for _ in range(SILENCE):
                yield 1
            self.done += 1

    dev.dev.ota = Ota()
    t = Ticker()
    seen = {}

    async def main():
        asyncio.create_task(t.loop())
        await aio._sleep_ms(1)
        before = t.n
        await dev.step()
        seen["ticks"] = t.n - before
        t.run = False

    go(main())
    assert dev.dev.ota.done == 1
    assert seen["ticks"] >= SILENCE // 2  # the chunk's waits were awaited, not slept
