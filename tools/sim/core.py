"""The module's core: its UART (a TCP socket, paced at the emulated baud rate), its CPU loop
(one thread that owns all module state), its power (autobaud, restart, power cycle, and
what the module prints at boot and on registering), its personality (the family played:
personality.py) and the tables the parts fill: commands and faults.

Design: the CPU thread takes command lines from the UART input buffer and events (broker
packets, connect/HTTP results, timers, injected faults) from a time-ordered queue, so
replies and URCs never interleave and runs are deterministic. Socket I/O (host UART,
broker link, HTTP) happens in helper threads that only post events.

A part (Part) is one piece of the module: it registers its commands and faults here and
calls only into the core (emit, after, post, spawn, sleep, read_data, boot, lose_network,
net, personality), never into another part. The core calls every part's hooks: reset()
at power-on, network_lost() when the PDP context goes, close() when the emulator stops.
"""
import heapq
import random
import re
import socket
import sys
import threading
import time

from tools.proc import Started
from tools.sim.dialect import ERROR, OK, ParamError, lines
from tools.sim.net import close_socket
from tools.sim.personality import Personality

__all__ = ["Core", "Part", "Personality"]


class Part:
    """One piece of the module, built on the core.

    COMMANDS: its command table, "+NAME" (or a basic command's letters, "E0") -> the name of
    a method (kind, args) -> reply bytes (None: a restart cut it short; raising ParamError:
    a bare ERROR), kind being "exec", "read" ("?"), "set" ("=args"); "=?" answers OK.
    FAULTS: fault kind -> the name of a method that injects it (run on the CPU thread);
    INTERRUPTS: the kinds that first cut short whatever the CPU is doing (a restart).
    OPTIONS: keyword -> default; VirtualModule(**options) hands each part its own."""

    COMMANDS = {}
    FAULTS = {}
    INTERRUPTS = ()
    OPTIONS = {}

    def __init__(self, core, **options):
        self.core = core
        for name, default in self.OPTIONS.items():
            setattr(self, name, options.get(name, default))

    def commands(self):
        return {name: getattr(self, method) for name, method in self.COMMANDS.items()}

    def reset(self):
        """Power-on: forget everything."""

    def network_lost(self):
        """The PDP context is gone: whatever rode on it goes too."""

    def close(self):
        """The emulator stops: close what is open."""


class Core(Started):
    """UART + CPU + power + the tables. baud: bytes paced at baud/10 per second both ways
    (0: unpaced). port: the TCP port (0: a free one). seed: one random stream per purpose
    (rng()). reply_delay: seconds before every reply."""

    OPTIONS = {"baud": 0, "port": 0, "seed": 724, "reply_delay": 0.0}

    def __init__(self, personality, net, baud=0, port=0, seed=724, reply_delay=0.0):
        self.personality = personality
        self.net = net
        self.baud = baud
        self.bind_port = port
        self.seed = seed
        self.reply_delay = reply_delay

        # public records
        self.log = []               # (direction "rx"/"tx", bytes), in order
        self.commands = []          # AT command strings received (without CR), in order
        self.muted = []             # (command, executed) of each command a mute fault took
        self.faults_injected = {}   # kind -> count
        self.port = None

        # the tables the parts fill
        self.parts = []
        self.command_table = {}
        self.fault_table = {}
        self._interrupts = set()

        # what faults set: bytes to lose, commands to mute, extra reply delay
        self.drop = 0
        self.muting = []            # execute flags, one per command still to mute
        self.slowdown = 0.0

        # plumbing
        self._cv = threading.Condition()     # guards _inbuf, _events, _abort, _stopping
        self._inbuf = bytearray()
        self._events = []                    # heap of (due, seq, fn)
        self._seq = 0
        self._abort = False
        self._stopping = False
        self._wlock = threading.Lock()
        self._conn = None
        self._lsock = None
        self._threads = []
        self._worker_thread = None
        self._tx_clock = 0.0
        self._rx_clock = 0.0
        self._hush = False                   # a muted command runs: its output is lost
        self._after = []
        self._triggers = []                  # [prefix, nth, kind, args, kwargs]
        self._boots = 0                      # power-ons so far: a later one cancels the chatter
        self.trained = False
        self.echo = True

    def add(self, part):
        """Take a part's commands and faults into the tables and its hooks into the loop."""
        self.parts.append(part)
        self.command_table.update(part.commands())
        for kind, method in part.FAULTS.items():
            self.fault_table[kind] = getattr(part, method)
        self._interrupts.update(part.INTERRUPTS)
        return part

    def rng(self, purpose):
        """A random stream of its own for one purpose, from the seed (a bearer opened or
        not does not change the garbage)."""
        return random.Random("%s:%s" % (self.seed, purpose))

    # ----- lifecycle ------------------------------------------------------------------
    def start(self):
        """Listen on 127.0.0.1 (a free port unless port= was given); returns at once."""
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", self.bind_port))
        self._lsock.listen(2)
        self.port = self._lsock.getsockname()[1]
        self.spawn(self._accept_loop, "vmodule-accept")
        self._worker_thread = self.spawn(self._worker, "vmodule-cpu")
        return self

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def stop(self):
        with self._cv:
            self._stopping = True
            self._abort = True
            self._cv.notify_all()
        if self._lsock:
            try:
                self._lsock.close()
            except OSError:
                pass
        conn, self._conn = self._conn, None
        if conn:
            close_socket(conn)
        for part in self.parts:
            part.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=3)

    def spawn(self, fn, name, *args):
        """A helper thread (socket I/O): it may only post() into the CPU."""
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return t

    # ----- power ----------------------------------------------------------------------
    def power_on(self, trained):
        """Everything a restart forgets, in the core and in every part."""
        self._boots += 1
        self.trained = trained
        self.echo = True
        self.net.power_on(time.monotonic())
        for part in self.parts:
            part.reset()

    def boot(self, trained):
        """Start over on the CPU thread. trained=True: a restart (autobaud kept; the family's
        restart lines announce it: `RDY`, `+CPIN: ...` on an Air724); False: a power cycle
        (an Air724 is silent until AT trains it, an Air780 prints `RDY`)."""
        with self._cv:
            self._abort = False
            self._inbuf.clear()
        self.power_on(trained)
        self.announce(trained)

    def announce(self, trained):
        """What the module prints by itself after a power-on: the boot lines now, the
        network's once it registers (a later power-on or flight mode cancels those)."""
        p = self.personality
        if trained and p.banner:
            self.emit(lines(p.banner))
        for line in (p.restart_lines if trained else p.power_up_lines):
            if line.startswith("+CPIN"):
                line = "+CPIN: READY" if self.net.sim else "+CPIN: NOT INSERTED"
            self.emit(lines(line))
        self.registration_chatter()

    def registration_chatter(self):
        """The family's network lines (and +NITZ) once the network takes the module: at the
        moment attach completes (attach_after seconds), at once for an attach counted in polls
        (at the first power-on, before anyone listens: lost)."""
        p = self.personality
        if not (p.network_lines or p.nitz):
            return
        boots = self._boots

        def registered():
            if boots != self._boots or not self.net.sim or not self.net.radio:
                return
            out = [lines(x) for x in p.network_lines]
            nitz = p.nitz_line()
            if nitz:
                out.append(lines(nitz))
            self.emit(b"".join(out))
        delay = self.net.attach_at - time.monotonic()
        if delay > 0:
            self.post(registered, delay)
        else:                           # an attach counted in polls: registered now
            registered()

    def flight_mode(self, on):
        """AT+CFUN=0/4 (on): the radio goes, and with it the network; AT+CFUN=1 (off): the
        radio comes back and attach starts over."""
        if on:
            self._boots += 1                 # registration lines still due are void
            self.net.radio = False
            self.lose_network(urc=None)
        elif not self.net.radio:
            self.net.radio = True
            self.net.restart_attach(self.net.attach_after)
            self.registration_chatter()

    def lose_network(self, urc):
        """The PDP context is gone: the URC (if any), the bearer, and every part's network."""
        if urc:
            self.emit(lines(urc))
        self.net.bearer_down()
        for part in self.parts:
            part.network_lost()

    # ----- the host side of the UART --------------------------------------------------
    def _accept_loop(self):
        self._lsock.settimeout(0.2)     # close() does not wake accept() on Linux
        while not self._stopping:
            try:
                conn, _ = self._lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old, self._conn = self._conn, conn   # one host at a time: the newest wins
            if old:
                close_socket(old)
            self.spawn(self._host_reader, "vmodule-uart-rx", conn)

    def _host_reader(self, conn):
        while not self._stopping:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            if self.baud:
                self._pace_rx(data)
            self.log.append(("rx", data))
            with self._cv:
                self._inbuf += data
                self._cv.notify_all()
        if self._conn is conn:
            self._conn = None
        close_socket(conn)

    def _pace_rx(self, data):
        bps = self.baud / 10.0
        now = time.monotonic()
        self._rx_clock = max(now, self._rx_clock) + len(data) / bps
        delay = self._rx_clock - now
        if delay > 0:
            time.sleep(delay)

    def emit(self, data):
        """Bytes onto the module's TX line (the only writer is the CPU thread, but the lock
        keeps it safe for anyone)."""
        if not data or self._hush:
            return
        with self._wlock:
            self.log.append(("tx", data))
            if self.drop:
                cut = min(self.drop, len(data))
                self.drop -= cut
                data = data[cut:]
                if not data:
                    return
            conn = self._conn
            if conn is None:
                return          # nobody on the UART: the bytes are lost
            try:
                if not self.baud:
                    conn.sendall(data)
                    return
                bps = self.baud / 10.0
                step = max(1, int(bps * 0.005))
                for off in range(0, len(data), step):
                    piece = data[off:off + step]
                    now = time.monotonic()
                    self._tx_clock = max(now, self._tx_clock) + len(piece) / bps
                    if self._tx_clock > now:
                        time.sleep(self._tx_clock - now)
                    conn.sendall(piece)
            except OSError:
                pass

    # ----- the CPU --------------------------------------------------------------------
    def post(self, fn, delay=0.0):
        """An event: fn runs on the CPU thread `delay` seconds from now."""
        with self._cv:
            self._seq += 1
            heapq.heappush(self._events, (time.monotonic() + delay, self._seq, fn))
            self._cv.notify_all()

    def after(self, fn):
        """Within a command: fn runs on the CPU thread once the reply is out."""
        self._after.append(fn)

    def _call(self, fn, timeout=10.0):
        """Run fn on the CPU thread and wait for it (faults)."""
        if threading.current_thread() is self._worker_thread or self._worker_thread is None:
            return fn()
        if self._stopping:
            return None
        done = threading.Event()
        box = []

        def run():
            try:
                box.append(fn())
            finally:
                done.set()
        self.post(run)
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if self._stopping or time.monotonic() > deadline:
                break
        return box[0] if box else None

    def _worker(self):
        while True:
            ev = line = None
            with self._cv:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._events and self._events[0][0] <= now:
                        ev = heapq.heappop(self._events)[2]
                        break
                    line = self._take_line()
                    if line is not None:
                        break
                    wait = self._events[0][0] - now if self._events else None
                    self._cv.wait(wait)
            try:
                if ev is not None:
                    ev()
                else:
                    self._on_line(line)
            except Exception as e:  # noqa: BLE001 - a bug must not kill the module silently
                sys.stderr.write("vmodule: internal error: %r\n" % (e,))
                import traceback
                traceback.print_exc()

    def _take_line(self):
        """Under _cv: the next command line (bytes up to and including CR), or None."""
        buf = self._inbuf
        if not self.trained:
            i = buf.find(b"AT\r")          # only upper-case AT + CR trains the autobaud
            if i < 0:
                if len(buf) > 2:
                    del buf[:-2]
                return None
            del buf[:i]
            self.trained = True
        j = buf.find(b"\r")
        if j < 0:
            if len(buf) > self.personality.line_max:
                del buf[:]                  # an endless line overflows the buffer: lost
            return None
        line = bytes(buf[:j + 1])
        del buf[:j + 1]
        return line.lstrip(b"\n")           # the LF of a CRLF ending: swallowed, not echoed

    @property
    def aborted(self):
        """A restart is cutting the running command short."""
        return self._abort

    def read_data(self, n, timeout):
        """Data mode: exactly n bytes from the UART within timeout, else None (and the
        partial data is discarded)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self._inbuf) < n:
                rem = deadline - time.monotonic()
                if self._abort or self._stopping or rem <= 0:
                    if not self._abort:
                        self._inbuf.clear()
                    return None
                self._cv.wait(rem)
            data = bytes(self._inbuf[:n])
            del self._inbuf[:n]
            return data

    def sleep(self, seconds):
        """Sleep on the CPU thread; a restart or stop cuts it short (returns False)."""
        if seconds <= 0:
            return not self._abort
        deadline = time.monotonic() + seconds
        with self._cv:
            while not (self._abort or self._stopping):
                rem = deadline - time.monotonic()
                if rem <= 0:
                    return True
                self._cv.wait(rem)
        return False

    def reply_pause(self):
        """The time the module takes before a reply (reply_delay + a slow fault)."""
        return self.sleep(self.reply_delay + self.slowdown)

    def _on_line(self, raw):
        text = raw[:-1].decode("latin-1") if raw.endswith(b"\r") else raw.decode("latin-1")
        i = text.upper().find("AT")
        muted = bool(self.muting) and i >= 0
        execute = self.muting.pop(0) if muted else True
        if self.echo and not muted:
            self.emit(raw)
        if i < 0:
            return          # not a command (an empty line, noise): ignored
        cmd = text[i:]
        self.commands.append(cmd)
        if not muted:
            self._dispatch(cmd)
        else:
            self.muted.append((cmd, execute))
            if execute:
                self._hush = True      # it runs, says nothing
                try:
                    self._dispatch(cmd)
                finally:
                    self._hush = False
        self._check_triggers(cmd)

    def _dispatch(self, cmd):
        self._after = []
        try:
            reply = self._execute(cmd[2:])
        except ParamError:
            reply = ERROR
        if reply is None:       # aborted by a restart
            return
        if not self.reply_pause():
            return
        self.emit(reply)
        for fn in self._after:
            fn()

    def _execute(self, body):
        """The command table: a basic command by its letters (`E0`, `I`, `` for AT), an
        extended one by "+NAME" and its kind."""
        up = body.upper()
        if not up.startswith("+"):
            handler = self.command_table.get(up)
            return handler("exec", None) if handler else ERROR
        m = re.match(r"\+[A-Z0-9_]+", up)
        if not m:
            return ERROR
        name, rest = m.group(0), body[m.end():]
        if rest == "":
            kind, args = "exec", None
        elif rest == "?":
            kind, args = "read", None
        elif rest == "=?":
            kind, args = "test", None
        elif rest.startswith("="):
            kind, args = "set", rest[1:]
        else:
            return ERROR
        handler = self.command_table.get(name)
        if handler is None:
            return ERROR
        if kind == "test":
            return OK
        return handler(kind, args)

    # ----- faults: the table, counted, schedulable ------------------------------------
    def inject(self, kind, *args, **kwargs):
        """Inject fault `kind` now (any thread): it runs on the CPU thread, is counted in
        faults_injected, and its result is returned."""
        fn = self.fault_table.get(kind)
        if fn is None:
            raise ValueError("unknown fault %r" % kind)
        if kind in self._interrupts:
            with self._cv:
                self._abort = True
                self._cv.notify_all()

        def run():
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1
            return fn(*args, **kwargs)
        return self._call(run)

    def schedule(self, kind, *args, delay=None, on_command=None, nth=1, **kwargs):
        """Inject fault `kind` later: after `delay` seconds, or right after the reply to
        the nth command starting with `on_command` (e.g. "AT+MPUB")."""
        if kind not in self.fault_table:
            raise ValueError("unknown fault %r" % kind)
        if on_command is not None:
            with self._cv:
                self._triggers.append([on_command.upper(), nth, kind, args, kwargs])
        else:
            t = threading.Timer(delay or 0.0, lambda: self.inject(kind, *args, **kwargs))
            t.daemon = True
            t.start()

    def _check_triggers(self, cmd):
        up = cmd.upper()
        fire = []
        with self._cv:
            for trig in list(self._triggers):
                if up.startswith(trig[0]):
                    trig[1] -= 1
                    if trig[1] <= 0:
                        self._triggers.remove(trig)
                        fire.append(trig)
        for _prefix, _n, kind, args, kwargs in fire:
            self.inject(kind, *args, **kwargs)      # on the CPU thread: runs at once

    # ----- helpers for tests ----------------------------------------------------------
    def wait_command(self, prefix, timeout=5.0, count=1):
        """Wait until `count` commands starting with prefix were received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for c in self.commands if c.upper().startswith(prefix.upper())) >= count:
                return True
            time.sleep(0.01)
        return False

    def transcript(self):
        """The log as readable text (for failing tests)."""
        return "\n".join("%s %r" % (d, b) for d, b in self.log)
