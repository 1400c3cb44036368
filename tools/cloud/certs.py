"""The local cloud's certificates, made with the `openssl` command (the `cryptography`
package is not in .venv) into one directory at start-up and reused while they fit:

    ca.pem, ca.key              the local cloud's own CA: what a test or the firmware's `ca`
                                trusts (cloud.json "ca_file")
    server.pem, server.key      the certificate the broker's TLS listeners and the HTTPS auth
                                endpoint present, issued by that CA for SERVER_NAMES
    rogue-ca.pem, rogue-ca.key  another CA, nobody's trust anchor
    rogue.pem, rogue.key        a certificate for the same names from the rogue CA: what a
                                man in the middle presents (python -m tools.cloud --mitm)

The names are those the firmware connects to (the virtual module maps every *.aliyuncs.com
host to the local cloud), so a module that verifies accepts the local cloud and refuses the
man in the middle on the chain alone. Keys are EC P-256 (made in milliseconds, where RSA-2048
takes half a second each, at every start of a cloud with a fresh state directory). A real
Air780 offers only TLS_RSA_* cipher suites (Luat's MQTT FAQ), so these certificates would not
do for a real module; the virtual module's TLS is Python's, which takes them.
"""
import os
import subprocess

# Aliyun's names for region cn-shanghai (the firmware's default) and the instance endpoints,
# the OSS bucket host update packages are fetched from (ota.py OTA_HOST), plus what a
# host-side client uses (127.0.0.1, localhost)
SERVER_NAMES = ("*.iot-as-mqtt.cn-shanghai.aliyuncs.com", "iot-auth.cn-shanghai.aliyuncs.com",
                "*.mqtt.iothub.aliyuncs.com", "*.auth.iothub.aliyuncs.com", "*.oss-cn-shanghai.aliyuncs.com",
                "localhost")
IDENTITIES = ("local", "rogue")  # which certificate the listeners present


def _ext(host):
    names = ",".join(["IP:%s" % host] + ["DNS:%s" % n for n in SERVER_NAMES])
    return ("basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=%s\n" % names)


_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


class OpensslMissing(RuntimeError):
    pass


def _run(*args):
    try:
        subprocess.run(("openssl",) + args, check=True, capture_output=True)
    except FileNotFoundError:
        raise OpensslMissing("the local cloud makes its TLS certificates with the `openssl` command, "
                             "which is not on PATH: install it (Debian/Ubuntu: apt-get install openssl)") from None


def _ca(directory, stem, subject):
    crt, key = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
    if not (os.path.exists(crt) and os.path.exists(key)):
        _run("req", "-x509", *_KEY, "-nodes", "-sha256", "-days", "3650",
             "-keyout", key, "-out", crt, "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def _leaf(directory, stem, ca, host):
    """A server certificate issued by ca for host and SERVER_NAMES; made again when the
    names it was made for (stem.ext) are not today's."""
    crt, key = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
    ext = os.path.join(directory, stem + ".ext")
    want = _ext(host)
    try:
        with open(ext) as f:
            fits = f.read() == want
    except OSError:
        fits = False
    if fits and os.path.exists(crt) and os.path.exists(key) and os.path.getmtime(crt) >= os.path.getmtime(ca[0]):
        return crt, key
    with open(ext, "w") as f:
        f.write(want)
    csr = os.path.join(directory, stem + ".csr")
    _run("req", "-new", *_KEY, "-nodes", "-sha256",
         "-keyout", key, "-out", csr, "-subj", "/CN=%s" % SERVER_NAMES[0])
    _run("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
         "-sha256", "-days", "825", "-extfile", ext, "-out", crt)
    os.remove(csr)
    return crt, key


def make_pki(directory, host="127.0.0.1"):
    """Everything above in directory; returns {"ca", "server": (crt, key), "rogue_ca",
    "rogue": (crt, key)}."""
    os.makedirs(directory, exist_ok=True)
    ca = _ca(directory, "ca", "/CN=Local Aliyun test CA")
    rogue_ca = _ca(directory, "rogue-ca", "/CN=Man in the middle CA")
    return {"ca": ca[0], "server": _leaf(directory, "server", ca, host),
            "rogue_ca": rogue_ca[0], "rogue": _leaf(directory, "rogue", rogue_ca, host)}
