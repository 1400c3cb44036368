"""The basic commands: AT, echo, identity (ATI, CGMR, CGSN, ICCID), settings the module
takes and forgets (CMEE, IPR), restart (CFUN=1,1, RESET), flight mode (CFUN=0/4, CFUN=1),
the SIM (CPIN; busy for a while after boot on an Air780), signal (CSQ) and the network
registration and attach (CREG/CEREG/CGREG, CGATT), over the core's Net.
"""
from tools.sim.core import Part
from tools.sim.dialect import CME_NO_SIM, CME_SIM_BUSY, ERROR, OK, ParamError, cme, integer, lines, parse_params, set_params


class Basic(Part):
    """imei, iccid: what CGSN and ICCID/CCID print; csq: (rssi, ber) with a SIM."""

    OPTIONS = {"imei": "866714043075174", "iccid": "89860425102180123456", "csq": (20, 99)}
    COMMANDS = {
        "": "ok", "Z": "ok", "&F": "ok", "&W": "ok", "V1": "ok", "Q0": "ok",
        "E0": "echo_off", "E": "echo_off", "E1": "echo_on", "I": "info", "I0": "info",
        "+CGMR": "cgmr", "+CMEE": "cmee", "+IPR": "ipr", "+CFUN": "cfun", "+RESET": "reset_cmd",
        "+CPIN": "cpin", "+CSQ": "csq_cmd", "+CREG": "creg", "+CEREG": "cereg", "+CGREG": "cgreg",
        "+CGATT": "cgatt", "+CGSN": "cgsn", "+GSN": "cgsn", "+ICCID": "iccid_cmd", "+CCID": "ccid",
    }

    def ok(self, kind, args):
        return OK

    def echo_off(self, kind, args):
        self.core.echo = False
        return OK

    def echo_on(self, kind, args):
        self.core.echo = True
        return OK

    def info(self, kind, args):
        return lines(self.core.personality.version) + OK

    def cgmr(self, kind, args):
        return lines('+CGMR: "%s"' % self.core.personality.version) + OK if kind == "exec" else ERROR

    def cmee(self, kind, args):
        return lines("+CMEE: 1") + OK if kind == "read" else OK

    def ipr(self, kind, args):
        return lines("+IPR: 0") + OK if kind == "read" else OK

    def cfun(self, kind, args):
        core = self.core
        if kind == "read":
            return lines("+CFUN: %d" % self._fun) + OK
        if kind == "set":
            p = parse_params(args)
            if not 1 <= len(p) <= 2:
                raise ParamError("CFUN takes fun[,rst]")
            fun = integer(p[0])
            if fun not in (0, 1, 4):
                raise ParamError("fun is 0, 1 or 4")
            if len(p) == 2 and integer(p[1], 0, 1) == 1:     # AT+CFUN=1,1: restart
                core.after(lambda: core.boot(trained=True))
                return OK
            self._fun = fun
            if fun == 1:                # the radio is back after the OK, the network after it
                core.after(lambda: core.flight_mode(False))
            else:                       # 0 (minimum) and 4 (flight mode): the radio is off
                core.flight_mode(True)
                urc = core.personality.detach_urc
                if urc:
                    core.after(lambda: core.emit(lines(urc)))
            return OK
        return ERROR

    def reset(self):
        self._fun = 1

    def reset_cmd(self, kind, args):
        self.core.after(lambda: self.core.boot(trained=True))
        return OK

    def cpin(self, kind, args):
        if kind != "read":
            return ERROR
        net = self.core.net
        if not net.sim:
            return cme(CME_NO_SIM)
        if net.poll_sim_busy():         # the SIM is still starting (Air780, after boot)
            return cme(CME_SIM_BUSY)
        return lines("+CPIN: READY") + OK

    def csq_cmd(self, kind, args):
        if kind != "exec":
            return ERROR
        rssi, ber = self.csq if self.core.net.sim else (99, 99)
        return lines("+CSQ: %d,%d" % (rssi, ber)) + OK

    def _registration(self, name, kind):
        if kind == "read":
            net = self.core.net
            stat = 1 if net.attached else (2 if net.sim else 0)
            return lines("+%s: 0,%d" % (name, stat)) + OK
        return OK if kind == "set" else ERROR

    def creg(self, kind, args):
        return self._registration("CREG", kind)

    def cereg(self, kind, args):
        return self._registration("CEREG", kind)

    def cgreg(self, kind, args):
        return self._registration("CGREG", kind)

    def cgatt(self, kind, args):
        net = self.core.net
        if kind == "read":
            return lines("+CGATT: %d" % (1 if net.poll_attached() else 0)) + OK
        v = integer(set_params(kind, args, 1)[0], 0, 1)
        if not net.sim:
            return cme(CME_NO_SIM)
        if v == 1:
            net.attach()
        else:
            net.detached = True
            self.core.lose_network(urc=None)
        return OK

    def cgsn(self, kind, args):
        return lines(self.imei) + OK if kind == "exec" else ERROR

    def iccid_cmd(self, kind, args):
        if kind not in ("exec", "read"):
            return ERROR
        return lines("+ICCID: " + self.iccid) + OK if self.core.net.sim else cme(CME_NO_SIM)

    def ccid(self, kind, args):
        if kind not in ("exec", "read"):
            return ERROR
        return lines(self.iccid) + OK if self.core.net.sim else cme(CME_NO_SIM)
