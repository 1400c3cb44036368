"""The emulated module: a virtual Air724UG on a TCP port, the UART side of the module, for
end-to-end tests (`python -m tools.sim` runs one, __main__.py). It speaks the AT dialect as
the module does (autobaud, echo, `\\r\\n<line>\\r\\n` framing, `+CME ERROR: n`), opens a
bearer, makes real HTTP requests and is a real MQTT client, and takes injected faults.

Built from parts, TinyGSM-style: each part calls down into the core, never sideways.

    dialect.py   the dialect's text: framing, parameter lists, escapes   (bottom)
    net.py       SIM, attach, PDP context, bearer address; DNS, TLS
    core.py      UART, CPU loop, power, personality; the command and fault tables,
                 the parts' hooks (reset, network_lost, close)
    basic.py     AT, ATE, ATI, CGMR, CPIN, CSQ, CREG, CGATT, CFUN, ...
    bearer.py    SAPBR
    http.py      HTTPINIT .. HTTPTERM
    mqtt.py      MCONFIG .. MPUB, MSUB downlinks; the link's faults
    faults.py    UART noise, mute, slow, restart, power cycle, PDP loss, SIM

    vm = VirtualModule(auth_url="http://127.0.0.1:P", mqtt_addr=("127.0.0.1", p1))
    vm.start(); ser = serial.serial_for_url(vm.url); ...; vm.stop()
    vm.pdp_loss(down=2); vm.schedule("closed", on_command="AT+MPUB", nth=3)

The LF of a CRLF command ending is swallowed, not echoed (inferred); mute() swallows the
echo too. Where the dialect documents are silent elsewhere, the part says "(inferred)".
"""
import functools

from tools.sim.basic import Basic
from tools.sim.bearer import Bearer
from tools.sim.core import Core, Personality
from tools.sim.faults import Faults
from tools.sim.http import Http
from tools.sim.mqtt import Mqtt
from tools.sim.net import Net

PARTS = (Basic, Bearer, Http, Mqtt, Faults)


class VirtualModule(Core):
    """An emulated Air724UG reachable at `self.url` (socket://127.0.0.1:PORT).

    Options are keywords, each taken by the piece that owns it (see their OPTIONS and
    docstrings): Core (baud, port, seed, reply_delay), Personality (version, mpubex_max),
    Net (sim, attach_after) and each part (Basic: imei, iccid, csq; Bearer: bearer_delay;
    Http: auth_url, http_delay, http_timeout; Mqtt: mqtt_addr, mqtts_addr, the MQTT delays
    and timeouts, ...). personality= replaces the Air724UG with another family.

    Records: log, commands, muted, faults_injected (the core's), stats and connack_code
    (the MQTT part's). Faults by name, from the parts' fault table: vm.closed(),
    vm.pdp_loss(down=2), vm.mute(1, execute=True), ... (see faults.py, mqtt.py).
    """

    def __init__(self, personality=None, **options):
        def take(names):
            return {k: options.pop(k) for k in list(options) if k in names}

        if personality is None:
            personality = Personality(**take(("version", "mpubex_max")))
        super().__init__(personality, Net(**take(Net.OPTIONS)), **take(Core.OPTIONS))
        parts = [self.add(cls(self, **take(cls.OPTIONS))) for cls in PARTS]
        if options:
            raise TypeError("VirtualModule: unknown option(s) %s" % ", ".join(sorted(options)))
        self.mqtt = parts[PARTS.index(Mqtt)]
        hidden = [k for k in self.fault_table if k in self.__dict__ or hasattr(type(self), k)]
        if hidden:  # vm.<fault>() would find the attribute instead
            raise TypeError("VirtualModule: fault names taken by attributes: %s" % ", ".join(hidden))
        self.power_on(trained=False)

    def __getattr__(self, name):
        """A fault by its name, e.g. vm.closed(): Core.inject(name, ...)."""
        if name in self.__dict__.get("fault_table", ()):
            return functools.partial(self.inject, name)
        raise AttributeError("%s has no attribute or fault %r" % (type(self).__name__, name))

    @property
    def stats(self):
        """MQTT counters: pingreq, pingresp, published, downlinks."""
        return self.mqtt.stats

    @property
    def connack_code(self):
        """Return code of the last CONNACK (None: none yet)."""
        return self.mqtt.connack_code
