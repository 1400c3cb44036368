"""AT+SSLCFG, the SSL contexts' settings (Air780 family; the Air724 personality answers
ERROR): `AT+SSLCFG="<setting>",<n>,<value>` sets, `AT+SSLCFG="<setting>",<n>` asks
(`+SSLCFG: "<setting>",<n>,<value>`), `AT+SSLCFG="<setting>",<n>,` (an empty value) erases.
Context ids 0..5 (TCP), 34 (FTP), 88 (MQTT), 153 (HTTP), as in the manual. The settings live
in the core's Net and are forgotten at a restart (inferred: the module keeps no AT settings
unless saved); net.py makes the TLS client of a context from them: "seclevel" 1 or 2 verifies
the server against the file "cacert" names, "hostname" replaces the name checked.

Where the manual is silent (inferred): a "cacert" is only a name when set (the file is read
at the handshake); the query prints string values quoted.
"""
from tools.sim.core import Part
from tools.sim.dialect import ERROR, OK, ParamError, integer, lines, set_params

# setting -> (kind, lo, hi): "int" within [lo, hi], "str" a quoted or bare text, "hex" 0X....
SETTINGS = {
    "sslversion": ("int", 0, 4), "ciphersuite": ("hex", 0, 0xFFFF), "cacert": ("str", 1, 64),
    "clientcert": ("str", 1, 64), "clientkey": ("str", 1, 64), "seclevel": ("int", 0, 2),
    "hostname": ("str", 1, 253), "ignorelocaltime": ("int", 0, 1), "negotiatetimeout": ("int", 10, 300),
    "clientrandom": ("str", 56, 64), "premaster": ("str", 1, 256), "verifymode": ("int", 0, 1),
}


class SslCfg(Part):
    COMMANDS = {"+SSLCFG": "sslcfg"}

    def commands(self):
        return super().commands() if self.core.personality.ssl_contexts else {}

    def sslcfg(self, kind, args):
        p = set_params(kind, args, 2, 3)
        setting = p[0][0].lower()
        if setting not in SETTINGS or not p[0][1]:
            raise ParamError("unknown setting")
        n = integer(p[1])
        if n not in self.core.personality.ssl_contexts:
            return ERROR
        ctx = self.core.net.ssl.setdefault(n, {})
        if len(p) == 2:                                  # a query
            value = ctx.get(setting)
            if value is None:
                value = 0 if SETTINGS[setting][0] == "int" else ""
            shown = '"%s"' % value if isinstance(value, str) else "%d" % value
            return lines('+SSLCFG: "%s",%d,%s' % (setting, n, shown)) + OK
        text, quoted = p[2]
        if text == "" and not quoted:                    # "<setting>",<n>, : erase
            ctx.pop(setting, None)
            return OK
        ctx[setting] = _value(setting, text)
        return OK


def _value(setting, text):
    kind, lo, hi = SETTINGS[setting]
    if kind == "int":
        return integer((text, False), lo, hi)
    if kind == "hex":
        if not text.upper().startswith("0X"):
            raise ParamError("a cipher suite is 0X....")
        try:
            v = int(text[2:], 16)
        except ValueError:
            raise ParamError("not hex") from None
        if not lo <= v <= hi:
            raise ParamError("out of range")
        return "0X%04X" % v
    if not lo <= len(text) <= hi:
        raise ParamError("bad length")
    return text
