"""The emulated module: a virtual Air724UG, Air780E or Air780EP on a TCP port, the UART side
of the module, for end-to-end tests (`python -m tools.sim` runs one, __main__.py). It speaks
the AT dialect as the module does (autobaud, echo, `\\r\\n<line>\\r\\n` framing, `+CME
ERROR: n`), opens a bearer, makes real HTTP(S) requests and is a real MQTT client, verifies
TLS servers against the CA it was given where the family can, and takes injected faults.

Built from parts, TinyGSM-style: each part calls down into the core, never sideways.

    dialect.py   the dialect's text: framing, parameter lists, escapes   (bottom)
    net.py       SIM, attach, PDP context, bearer address; DNS, TLS
    personality.py  the families: version, limits, chatter, what exists
    core.py      UART, CPU loop, power, boot and network chatter, flight mode, the
                 personality; the command and fault tables, the parts' hooks (reset,
                 network_lost, close)
    basic.py     AT, ATE, ATI, CGMR, CPIN, CSQ, CREG, CGATT, CFUN, ...
    bearer.py    SAPBR
    http.py      HTTPINIT .. HTTPTERM
    mqtt.py      MCONFIG .. MPUB, MSUB downlinks; the link's faults
    files.py     FSCREATE, FSWRITE, FSDEL, FSREAD, FSFLSIZE (Air780 family)
    sslcfg.py    SSLCFG: the SSL contexts (Air780 family)
    faults.py    UART noise, mute, slow, restart, power cycle, PDP loss, SIM

    vm = VirtualModule(auth_url="http://127.0.0.1:P", mqtt_addr=("127.0.0.1", p1),
                       personality="air780e")
    vm.start(); ser = serial.serial_for_url(vm.url); ...; vm.stop()
    vm.pdp_loss(down=2); vm.schedule("closed", on_command="AT+MPUB", nth=3)

The LF of a CRLF command ending is swallowed, not echoed (inferred); mute() swallows the
echo too. Where the dialect documents are silent elsewhere, the part says "(inferred)".
"""
import functools

from tools.sim.basic import Basic
from tools.sim.bearer import Bearer
from tools.sim.core import Core
from tools.sim.faults import Faults
from tools.sim.files import Files
from tools.sim.http import Http
from tools.sim.mqtt import Mqtt
from tools.sim.net import Net
from tools.sim.personality import PERSONALITIES, Personality, personality as make_personality
from tools.sim.sslcfg import SslCfg

__all__ = ["PERSONALITIES", "Personality", "VirtualModule"]

PARTS = (Basic, Bearer, Http, Mqtt, Files, SslCfg, Faults)


class VirtualModule(Core):
    """An emulated module reachable at `self.url` (socket://127.0.0.1:PORT).

    personality: the family played, a name of PERSONALITIES ("air724ug", the default;
    "air780e", "air780ep") or a Personality. Options are keywords, each taken by the piece
    that owns it (see their OPTIONS and docstrings): Core (baud, port, seed, reply_delay),
    the personality (version, mpubex_max), Net (sim, attach_after, sim_busy: the family's
    defaults unless given) and each part (Basic: imei, iccid, csq; Bearer: bearer_delay;
    Http: auth_url, auths_url, http_delay, http_timeout; Mqtt: mqtt_addr, mqtts_addr, the
    MQTT delays and timeouts, ...).

    Records: log, commands, muted, faults_injected (the core's), handshakes and files (the
    Net's), stats and connack_code (the MQTT part's). Faults by name, from the parts' fault
    table: vm.closed(), vm.pdp_loss(down=2), vm.mute(1, execute=True), ... (see faults.py,
    mqtt.py).
    """

    def __init__(self, personality=None, **options):
        def take(names):
            return {k: options.pop(k) for k in list(options) if k in names}

        overrides = take(("version", "mpubex_max"))
        if personality is None or isinstance(personality, str):
            personality = make_personality(personality or "air724ug", **overrides)
        elif overrides:
            raise TypeError("VirtualModule: version / mpubex_max go with a personality name, not an instance")
        net = take(Net.OPTIONS)
        net.setdefault("attach_after", personality.attach_after)
        net.setdefault("sim_busy", personality.sim_busy_s)
        super().__init__(personality, Net(**net), **take(Core.OPTIONS))
        parts = [self.add(cls(self, **take(cls.OPTIONS))) for cls in PARTS]
        if options:
            raise TypeError("VirtualModule: unknown option(s) %s" % ", ".join(sorted(options)))
        self.mqtt = parts[PARTS.index(Mqtt)]
        hidden = [k for k in self.fault_table if k in self.__dict__ or hasattr(type(self), k)]
        if hidden:  # vm.<fault>() would find the attribute instead
            raise TypeError("VirtualModule: fault names taken by attributes: %s" % ", ".join(hidden))
        self.power_on(trained=False)
        self.announce(trained=False)

    def __getattr__(self, name):
        """A fault by its name, e.g. vm.closed(): Core.inject(name, ...)."""
        if name in self.__dict__.get("fault_table", ()):
            return functools.partial(self.inject, name)
        raise AttributeError("%s has no attribute or fault %r" % (type(self).__name__, name))

    @property
    def stats(self):
        """MQTT counters: pingreq, pingresp, published, downlinks, downlinks_lost (longer
        than the family delivers)."""
        return self.mqtt.stats

    @property
    def handshakes(self):
        """Every TLS handshake: (SSL context, server name, verified, error or None)."""
        return self.net.handshakes

    @property
    def files(self):
        """The module's file system: name -> bytearray."""
        return self.net.files

    @property
    def connack_code(self):
        """Return code of the last CONNACK (None: none yet)."""
        return self.mqtt.connack_code
