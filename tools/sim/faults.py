"""The module-wide faults: noise on the UART (garbage, drop_bytes), commands that get no
reply (mute) or a late one (slow), a restart (reboot) or a power cycle, and the radio
(pdp_loss, sim_removed, sim_inserted). Each runs on the CPU thread through the core's fault
table (Core.inject, Core.schedule), which counts it; the MQTT link's own faults (closed,
lost_session) are the MQTT part's.
"""
from tools.sim.core import Part
from tools.sim.dialect import lines


class Faults(Part):
    FAULTS = {kind: kind for kind in ("garbage", "drop_bytes", "mute", "slow", "reboot", "power_cycle",
                                      "pdp_loss", "sim_removed", "sim_inserted")}
    INTERRUPTS = ("reboot", "power_cycle")

    def __init__(self, core, **options):
        super().__init__(core, **options)
        self._rng = core.rng("garbage")

    def garbage(self, data=None):
        """Noise on the TX line: the given bytes or 4..24 random (seeded) bytes; returns them."""
        r = self._rng
        d = data if data is not None else bytes(r.randrange(256) for _ in range(r.randint(4, 24)))
        self.core.emit(d)
        return d

    def drop_bytes(self, n):
        """The next n bytes of output are lost."""
        self.core.drop += n

    def mute(self, n=1, execute=False):
        """The next n commands get no reply at all (no echo either). execute=True: they
        still take effect (a lost reply); default: lost on the way in."""
        self.core.muting.extend([execute] * n)

    def slow(self, seconds):
        """Delay every command reply by `seconds` more (0 ends it)."""
        self.core.slowdown = seconds

    def reboot(self):
        """Module restart: the family's restart lines (`RDY`, `+CPIN: READY` on an Air724);
        all state lost, echo on, still trained."""
        self.core.boot(trained=True)

    def power_cycle(self):
        """Power off and on: silent, autobaud needed again, all state lost."""
        self.core.boot(trained=False)

    def pdp_loss(self, down=2, urc=None):
        """The family's URC (`+PDP: DEACT` on an Air724, `+CGEV: NW PDN DEACT 1` on an Air780;
        or urc=`+PDP DEACT`, `+SAPBR 1: DEACT`, ...); bearer and link gone (an Air724 prints
        `CLOSED` too when a link was up); CGATT? answers 0 for `down` polls (int) or seconds
        (float)."""
        if urc is None:
            urc = self.core.personality.pdp_urc
        net = self.core.net
        net.pdp_lost = True
        net.restart_attach(down)
        self.core.lose_network(urc)

    def sim_removed(self):
        """`+CPIN: SIM REMOVED`: the network and the SIM queries go with it."""
        self.core.net.sim = False
        self.core.lose_network("+CPIN: SIM REMOVED")

    def sim_inserted(self):
        """The SIM is back: `+CPIN: READY`, attach starts over (attach_after)."""
        net = self.core.net
        net.sim = True
        net.restart_attach(net.attach_after)
        self.core.emit(lines("+CPIN: READY"))
