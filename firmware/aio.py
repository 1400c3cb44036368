# The asyncio front (issue 23): the same Device, Link and AT engine, awaited instead of
# blocking, so that the app's other tasks (sensors, a display, a button) keep running while
# the link connects, recovers or waits for a PUBACK. There is no second engine: the link's
# steps and the driver's commands are generators (firmware/at.py cmd_g) that yield the ms
# they would wait for the module; the sync API sleeps them (port.run), this file awaits
# them with asyncio.sleep_ms (asyncio.sleep on CPython), so the loop is never held longer
# than one read and parse of what the UART has.
#
#   from firmware.device import Device
#   dev = Device().aio()            # an AsyncDevice; a sync program never imports this file
#   dev.start()                     # the supervisor as a task (or: await dev.run())
#   ok = await dev.publish("user/update", '{"t": 21.5}')      # True after its PUBACK
#   async for topic, payload in dev.messages(): ...            # downlinks, in order
#
# One thing talks to the module at a time: the supervisor holds a lock for each step, a
# QoS 0 publish for its AT+MPUB, so a publish waits its turn instead of being refused.
# Handlers and the thing model publish as in the sync API; their QoS 0 messages and new
# subscriptions are sent by the supervisor's next step (Link.defer), never from inside a
# step. A cancelled call abandons its command: the engine is free again at once, and a late
# answer is counted by the engine as a stray line.
import asyncio

from firmware import log
from firmware.port import const

_TAG = "aio"
_LOOP_MS = const(5)  # the supervisor's pause between two steps
QUEUE = const(16)  # downlinks messages() holds before the oldest is dropped (counted)

# MicroPython's asyncio.sleep_ms, or CPython's asyncio.sleep in seconds
_sleep_ms = getattr(asyncio, "sleep_ms", None) or (lambda ms: asyncio.sleep(ms / 1000))


class AsyncDevice:
    def __init__(self, dev, queue=QUEUE):
        """dev: a Device (Device.aio() builds this); queue: how many downlinks messages()
        holds (when full, the oldest is dropped and counted in stats()["messages_dropped"])."""
        if not isinstance(queue, int) or queue < 1:
            raise ValueError("queue: %r is not a positive number of messages" % (queue,))
        self.dev = dev
        self.thing = dev.thing
        link = dev.link
        link.defer = True  # publish()/subscribe() from handlers: the next step sends them
        link.on_left = self._left
        dev.on_message = self._put
        self._lock = asyncio.Lock()
        self._q = []
        self._qmax = queue
        self._got = asyncio.Event()
        self._acks = {}  # outbox position -> [result, Event] of an awaited QoS 1 publish
        self.dropped = 0
        self.task = None

    # ------------------------------------------------------------------ the API
    @property
    def up(self):
        return self.dev.up

    def time(self):
        return self.dev.time()

    def uptime_s(self):
        return self.dev.uptime_s()

    def stats(self):
        s = self.dev.stats()
        s["messages_queued"] = len(self._q)
        s["messages_dropped"] = self.dropped
        return s

    def subscribe(self, topic, handler=None, qos=0):
        """As Device.subscribe; the AT+MSUB is sent by the supervisor's next step."""
        self.dev.subscribe(topic, handler, qos)

    def start(self):
        """Run the supervisor as a task (once); the task."""
        if self.task is None:
            self.task = asyncio.create_task(self.run())
        return self.task

    async def run(self):
        """The supervisor: step() every 5 ms, forever."""
        while True:
            await self.step()
            await _sleep_ms(_LOOP_MS)

    async def step(self):
        """One turn of the link (as Device.step), awaited; never raises."""
        try:
            async with self._lock:  # the timers too: an OTA chunk sends its own commands
                await self._drive(self.dev.link.step_g())
                await self._drive(self.dev.timers_g())
        except Exception as e:  # nothing escapes the supervisor (MemoryError included)
            log.error(_TAG, "step: %s", log.err(e))

    async def publish(self, topic, payload, qos=1):
        """QoS 1: queued in the outbox and sent by the supervisor; returns True after its
        PUBACK (also after a reconnect: the message waits in the outbox as long as it
        takes; bound it with asyncio.wait_for, the message stays queued), False when the
        outbox refused or dropped it. QoS 0: waits its turn, returns True after the
        module's OK, False when the link is down or the send failed (counted).
        TypeError / ValueError as Device.publish, at once."""
        link = self.dev.link
        topic = self.dev.topics.expand(topic)
        if qos != 1:  # QoS 0 (a bad QoS is named by the door inside)
            async with self._lock:
                return await self._drive(link.publish_g(topic, payload, qos))
        if not link.publish(topic, payload, 1):
            return False
        pos = link.left + len(link.outbox)  # this message's place among all ever queued
        w = self._acks[pos] = [None, asyncio.Event()]
        try:
            await w[1].wait()
        finally:
            self._acks.pop(pos, None)
        return w[0]

    def messages(self):
        """`async for topic, payload in dev.messages()`: the downlinks no subscription
        handler took, in order."""
        return self

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._q:
            self._got.clear()
            await self._got.wait()
        return self._q.pop(0)

    # ------------------------------------------------------------------ internal
    async def _drive(self, g):
        """Run a generator of the engine to its end, awaiting every wait it yields."""
        idle = self.dev.modem.at.idle
        while True:
            try:
                ms = next(g)
            except StopIteration as e:
                return e.value
            if idle:
                idle()
            try:
                await _sleep_ms(ms)
            except BaseException:  # cancelled: the command is abandoned, the engine freed
                g.close()
                raise

    def _put(self, topic, payload):
        if len(self._q) >= self._qmax:
            old = self._q.pop(0)
            self.dropped += 1
            log.warn(_TAG, "messages(): %d waiting, dropped the oldest (%s, %d bytes; %d so far)",
                     self._qmax, old[0], len(old[1]), self.dropped)
        self._q.append((topic, payload))
        self._got.set()

    def _left(self, pos, acked):
        w = self._acks.get(pos)
        if w is not None:
            w[0] = acked
            w[1].set()
