# TLS that checks who the module talks to: the CA goes into the module's file system and
# both SSL contexts verify with it (Air780 family), once per module boot; a family without
# those commands is said once and connects unverified. Runs under CPython and MicroPython.
from fwtest import StubUART, capture_log, generators, release_log

from firmware import aliyun
from firmware.air72x import CA_FILE, Air72x
from firmware.config import DEFAULTS, ConfigError, check
from firmware.link import Link

OK = b"\r\nOK\r\n"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PK, DN = "a1DemoPk001", "demo-device-1"


def lines(*items):
    return b"".join(b"\r\n" + i + b"\r\n" for i in items)


def load_script(pem, fs_del=OK):
    f = CA_FILE.encode()
    return [
        (b'AT+FSDEL="' + f + b'"\r', fs_del),
        (b'AT+FSCREATE="' + f + b'"\r', OK),
        (b'AT+FSWRITE="' + f + b'",0,%d,10\r' % len(pem), b"\r\n>"),
        (pem, OK),
        (b'AT+SSLCFG="cacert",88,"' + f + b'"\r', OK),
        (b'AT+SSLCFG="seclevel",88,1\r', OK),
        (b'AT+SSLCFG="cacert",153,"' + f + b'"\r', OK),
        (b'AT+SSLCFG="seclevel",153,1\r', OK),
    ]


def test_an_air780_gets_the_ca_and_verification_on_both_contexts():
    for fs_del in (OK, b"\r\n+CME ERROR: 3\r\n"):  # the file was there, or not
        uart = StubUART(load_script(PEM, fs_del))
        m = Air72x(uart)
        m.version = "AirM2M_780E_V1161_LTE_AT"
        assert m.load_ca("ca.pem", PEM) is True
        assert uart.done() and m.ca_loaded == "ca.pem"


def test_an_air724_cannot_verify_and_writes_nothing():
    uart = StubUART([])
    m = Air72x(uart)
    m.version = "AirM2M_Air724UG_V401853_LTE_AT"
    assert m.load_ca("ca.pem", PEM) is False
    assert bytes(uart.written) == b"" and m.ca_loaded is None


def test_a_module_reboot_forgets_the_ca():
    uart = StubUART(load_script(PEM))
    m = Air72x(uart)
    m.version = "AirM2M_780EP_V1007_LTE_AT"
    m.load_ca("ca.pem", PEM)
    uart.feed(b"\r\nRDY\r\n")
    m.poll()
    assert m.ca_loaded is None


class _AT:
    idle = None
    baud = 0


class _Modem:
    """What Link needs of the driver for its TLS step, recording the loads."""

    def __init__(self, version):
        self.at = _AT()
        self.on_message = self.on_event = None
        self.version = version
        self.ca_loaded = None
        self.loads = []

    family = Air72x.family

    def load_ca(self, name, pem):
        self.loads.append((name, pem))
        self.ca_loaded = name
        return True


generators(_Modem, "load_ca")


def _link(modem, **cfg):
    c = check(dict({"product_key": PK, "device_name": DN, "device_secret": "s" * 32}, **cfg))
    return Link(modem, c, aliyun.Topics(PK, DN))


def test_the_link_loads_the_configured_ca_once_per_module_boot():
    m = _Modem("AirM2M_780E_V1161_LTE_AT")
    link = _link(m)
    link._verify(m)
    link._verify(m)
    assert len(m.loads) == 1 and m.loads[0][0].endswith("firmware/aliyun-ca.pem") and DEFAULTS["ca"] is None
    with open(m.loads[0][0], "rb") as f:
        assert m.loads[0][1] == f.read() and b"BEGIN CERTIFICATE" in m.loads[0][1]
    m.ca_loaded = None  # the module rebooted
    link._verify(m)
    assert len(m.loads) == 2


def test_a_family_that_cannot_verify_is_said_once_and_tls_verify_false_skips_it():
    cap = capture_log()
    try:
        m = _Modem("AirM2M_Air724UG_V401853_LTE_AT")
        link = _link(m)
        for _ in range(3):
            link._verify(m)
        assert m.loads == [] and cap.text().count("cannot verify") == 1
        m = _Modem("AirM2M_780E_V1161_LTE_AT")
        link = _link(m, tls_verify=False)
        link._verify(m)
        assert m.loads == []
    finally:
        release_log()




def test_the_ca_file_is_checked_at_load():
    base = {"product_key": PK, "device_name": DN, "device_secret": "s" * 32}
    for bad in ("no/such/file.pem", "main.py", 5, ""):
        try:
            check(dict(base, ca=bad))
        except ConfigError as e:
            assert e.field == "ca", e
        else:
            raise AssertionError("ca=%r was taken" % (bad,))
    check(dict(base, ca="no/such/file.pem", tls_verify=False))  # not used: not checked
    try:  # tls false still has HTTPS (auth, registration) to verify
        check(dict(base, ca="no/such/file.pem", tls=False))
    except ConfigError as e:
        assert e.field == "ca"
    else:
        raise AssertionError("a missing ca was taken with tls false")
    try:
        check(dict(base, tls_verify="yes"))
    except ConfigError as e:
        assert e.field == "tls_verify"
    else:
        raise AssertionError("tls_verify='yes' was taken")
