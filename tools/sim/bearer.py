"""The bearer (AT+SAPBR): the PDP context HTTP and MQTT ride on, its parameters, opening
(an address drawn from the seed) and closing, over the core's Net.
"""
from tools.sim.core import Part
from tools.sim.dialect import CME_FAILED, CME_NO_SIM, CME_NOT_ALLOWED, OK, ParamError, cme, integer, lines, set_params


class Bearer(Part):
    """bearer_delay: seconds AT+SAPBR=1,1 takes."""

    OPTIONS = {"bearer_delay": 0.0}
    COMMANDS = {"+SAPBR": "sapbr"}

    def __init__(self, core, **options):
        super().__init__(core, **options)
        self._rng = core.rng("ip")

    def sapbr(self, kind, args):
        p = set_params(kind, args)
        if len(p) < 2:
            raise ParamError("SAPBR needs cmd,cid")
        cmd, _cid = integer(p[0], 0, 4), integer(p[1], 1, 1)
        if cmd == 3:
            if len(p) != 4 or p[2][0].upper() not in ("CONTYPE", "APN", "USER", "PWD"):
                raise ParamError("SAPBR=3 needs a parameter and a value")
            return OK
        if len(p) != 2:
            raise ParamError("too many parameters")
        net = self.core.net
        if cmd == 4:
            return lines("+SAPBR:", "CONTYPE: GPRS") + OK
        if cmd == 2:
            if net.bearer_open:
                return lines('+SAPBR: 1,1,"%s"' % net.bearer_ip) + OK
            return lines('+SAPBR: 1,3,"0.0.0.0"') + OK
        if cmd == 1:
            return self._open()
        if cmd == 0:
            if not net.bearer_open:
                return cme(CME_NOT_ALLOWED)
            net.bearer_down()
            return OK
        raise ParamError("unknown SAPBR cmd")

    def _open(self):
        net = self.core.net
        if net.bearer_open:
            return cme(CME_NOT_ALLOWED)
        if not net.sim:
            return cme(CME_NO_SIM)
        if not net.attached:
            return cme(CME_FAILED)
        if self.bearer_delay and not self.core.sleep(self.bearer_delay):
            return None
        net.bearer_open = True
        net.pdp_lost = False
        r = self._rng
        net.bearer_ip = "10.%d.%d.%d" % (r.randint(0, 255), r.randint(0, 255), r.randint(1, 254))
        return OK
