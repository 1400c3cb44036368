"""The module families the virtual module plays, one Personality each: what AT+CGMR says,
the limits, what the module prints unasked (boot, network, flight mode), the SIM's start-up,
and which commands exist (the file system and AT+SSLCFG on the Air780 family only).

    air724ug   AirM2M_Air724UG_V409_LTE_AT   the UNISOC 8910 AT firmware (the default)
    air780e    AirM2M_780E_V1161_LTE_AT      the EC618 AT firmware
    air780ep   AirM2M_780EP_V1007_LTE_AT     the EC718 (EC618 AT) firmware

Every figure here and where it comes from (a captured log, a vendor document, or inferred):
docs/modules.md. The parts read these attributes through core.personality; a part's own
option still overrides a family's default where it has one (Mqtt: mqtt_needs_bearer).

    personality("air780e")                      # the family's defaults
    personality("air724ug", version="V401853")  # another firmware number of the family
"""
import re
import time


class Personality:
    """The Air724UG (the behaviour the virtual module always had).

    version: the whole string, or just the firmware number ("V401853", "409"), which is put
    into the family's pattern. mpubex_max: override the AT+MPUBEX limit."""

    name = "air724ug"
    family = "Air724UG"
    tag = "Air724UG"            # what the version string holds: AirM2M_<tag>_V<n>_LTE_AT
    default_version = "AirM2M_Air724UG_V409_LTE_AT"

    # limits
    mpub_max = 2384          # largest decoded AT+MPUB message (Air724 firmware since V838)
    mpubex_max = 10240       # largest AT+MPUBEX payload (unsourced; the driver stays at 4100)
    msub_max = 1360          # largest payload pushed as +MSUB (Luat's MQTT FAQ); longer: lost
    mconfig_max = 256        # clientid / user / password, each
    url_max = 500
    line_max = 16384         # command line buffer (inferred; an escaped 2384-byte MPUB fits)

    # what it prints unasked
    restart_lines = ("RDY", "+CPIN: READY")   # after a restart (AT+CFUN=1,1, AT+RESET, reboot)
    power_up_lines = ()      # after a power cycle, before any AT (the 8910 stays silent)
    banner = None            # the boot ROM's line before RDY on a restart
    network_lines = ()       # once registered, after boot and after flight mode
    nitz = None              # +NITZ format (time.strftime, UTC), None: no network time line
    detach_urc = None        # what AT+CFUN=0 / 4 prints after its OK
    pdp_urc = "+PDP: DEACT"  # the network drops the PDP context (faults.pdp_loss default)
    closed_on_pdp_loss = True    # ... and an MQTT link up prints CLOSED after it

    # start-up
    sim_busy_s = 0.0         # AT+CPIN? answers +CME ERROR: 14 this long after boot
    attach_after = 0         # the Net default (polls, or seconds when a float)

    # what exists
    mqtt_needs_bearer = True     # MIPSTART needs AT+SAPBR=1,1 first (inferred)
    files = False            # AT+FSCREATE / FSWRITE / FSDEL / FSREAD / FSFLSIZE / FSLS
    ssl_contexts = ()        # AT+SSLCFG context ids; () = no AT+SSLCFG (ERROR)
    mqtt_ssl_context = None  # the context SSLMIPSTART takes its settings from
    http_ssl_context = None  # ... and an https:// HTTPACTION
    fs_prompt = b"\r\n> "    # AT+FSWRITE's prompt
    fs_write_max = 10240     # largest AT+FSWRITE
    fs_name_max = 64

    def __init__(self, version=None, mpubex_max=None):
        version = self.default_version if version is None else str(version)
        m = re.fullmatch(r"V?(\d+)", version)
        self.version = "AirM2M_%s_V%s_LTE_AT" % (self.tag, m.group(1)) if m else version
        if mpubex_max is not None:
            self.mpubex_max = mpubex_max

    def nitz_line(self, now=None):
        if not self.nitz:
            return None
        return "+NITZ: " + time.strftime(self.nitz, time.gmtime(now))


class Air780E(Personality):
    """The Air780E on its EC618 AT firmware."""

    name = "air780e"
    family = "Air780E"
    tag = "780E"
    default_version = "AirM2M_780E_V1161_LTE_AT"

    mpub_max = 2384          # the Air780E AT guide's FAQ (the command page says 4100)
    mpubex_max = 4100
    msub_max = 1360          # the Air780E AT guide's FAQ (the command page says 4100)

    restart_lines = ("RDY",)
    power_up_lines = ("RDY",)
    banner = "^boot.rom'v'!\\n"   # as the captures print it: a backslash and an n
    network_lines = ("^MODE: 17,17", "+E_UTRAN Service", "+CGEV: ME PDN ACT 1")
    nitz = "%Y/%m/%d,%H:%M:%S+0,0"
    detach_urc = "+CGEV: ME DETACH"
    pdp_urc = "+CGEV: NW PDN DEACT 1"
    closed_on_pdp_loss = False

    sim_busy_s = 1.5
    attach_after = 2.0

    mqtt_needs_bearer = False    # the default PDP context carries MQTT (capture)
    files = True
    ssl_contexts = (0, 1, 2, 3, 4, 5, 34, 88, 153)
    mqtt_ssl_context = 88
    http_ssl_context = 153


class Air780EP(Air780E):
    """The Air780EP (EC718 platform, the same AT firmware line)."""

    name = "air780ep"
    family = "Air780EP"
    tag = "780EP"
    default_version = "AirM2M_780EP_V1007_LTE_AT"

    mpub_max = 4100          # the Air780EP MQTT guide (and the command page)
    msub_max = 4100          # the Air780EP MQTT guide
    nitz = "%y/%m/%d,%H:%M:%S+32,0"
    detach_urc = None        # its SIM guide's AT+CFUN=0 prints only OK


PERSONALITIES = {cls.name: cls for cls in (Personality, Air780E, Air780EP)}


def personality(name="air724ug", **overrides):
    """The named family (PERSONALITIES), with version= / mpubex_max= overrides."""
    try:
        cls = PERSONALITIES[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError("unknown personality %r (one of %s)" % (name, ", ".join(PERSONALITIES))) from None
    return cls(**overrides)
