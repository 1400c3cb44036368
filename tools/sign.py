#!/usr/bin/env python3
"""Aliyun IoT credentials for one device, offline: replaces the online sign tools the
seed walkthrough points to. Uses firmware/sign.py, the same code the board runs.

    python3 -m tools.sign --product-key PK --device-name DN --device-secret DS \\
        [--client-id ID] [--method hmacsha1] [--timestamp MS] [--securemode 2|3] \\
        [--region cn-shanghai] [--json]

(from the repository root; `python3 <repo>/tools/sign.py ...` works from anywhere)

Prints the MQTT-direct triple (clientId, username, password), host and port, the exact
AT+MCONFIG line, the /auth/devicename body with its byte length, and the seed's whole AT
procedure filled in for this device, for testing by hand in a serial terminal.
--device-secret may be left out when ALIYUN_DEVICE_SECRET is set (keeps it out of `ps`).
Bad input: one line on stderr naming the field, exit status 2.
"""
import argparse
import json
import os
import sys


from firmware import auth, sign

PORT = 1883
KEEPALIVE = 300  # seconds; the platform accepts 30..1200


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage first otherwise)
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


class InputError(ValueError):
    pass


def _at_safe(value, field):
    # AT string arguments are double-quoted and the line ends at CR/LF: neither can pass.
    if '"' in value or any(ord(c) < 0x20 for c in value):
        raise InputError("%s: must not contain '\"' or control characters (AT strings cannot carry them)" % field)


def build(product_key, device_name, device_secret, client_id=None, method=None, timestamp=None,
          securemode=2, region="cn-shanghai"):
    """Everything the CLI prints, as a dict (the --json keys plus `script`, `securemode`,
    `method`). Raises ValueError naming the field on bad input."""
    if not region or not all(c.isalnum() or c == "-" for c in region) or not region.isascii():
        raise InputError("region: letters, digits and '-' only (e.g. cn-shanghai)")
    for value, field in ((product_key, "product_key"), (device_name, "device_name"), (client_id, "client_id")):
        if value:
            _at_safe(value, field)
    mqtt_kw = {"client_id": client_id, "timestamp": timestamp, "securemode": securemode}
    auth_kw = {"client_id": client_id, "timestamp": timestamp}
    if method is not None:  # else each flow's own default (MQTT hmacsha256, HTTP auth hmacmd5)
        mqtt_kw["method"] = auth_kw["method"] = method
    cid, username, password = sign.mqtt_credentials(product_key, device_name, device_secret, **mqtt_kw)
    body = auth.auth_form(product_key, device_name, device_secret, **auth_kw)
    host = "%s.iot-as-mqtt.%s.aliyuncs.com" % (product_key, region)
    mconfig = 'AT+MCONFIG="%s","%s","%s"' % (cid, username, password)
    length = len(body.encode())
    pk, dn = product_key, device_name
    script = [
        "# 1. AT port: autobaud (upper-case AT); the firmware must be V409 or later",
        "AT",
        "AT+CGMR",
        "# 2. data network: go on only after +CGATT: 1",
        "AT+CGATT?",
        'AT+SAPBR=3,1,"CONTYPE","GPRS"',
        'AT+SAPBR=3,1,"APN","CMIIOT"',
        "AT+SAPBR=1,1",
        "# 3. HTTP auth (/auth/devicename): the reply carries iotId and iotToken",
        "AT+HTTPINIT",
        'AT+HTTPPARA="URL","https://iot-auth.%s.aliyuncs.com/auth/devicename"' % region,
        'AT+HTTPPARA="USER_DEFINED","Content-Type: application/x-www-form-urlencoded"',
        "AT+HTTPDATA=%d,20000" % length,
        "# after DOWNLOAD send exactly these %d bytes:" % length,
        body,
        "AT+HTTPACTION=1",
        "# wait for +HTTPACTION: 1,200,<length>",
        "AT+HTTPREAD",
        "AT+HTTPTERM",
        '# token path instead of the MCONFIG below: AT+MCONFIG="<any clientId>","<iotId>","<iotToken>"',
        "# 4. MQTT direct (securemode=%d, %s)" % (securemode, "TLS" if securemode == 2 else "plain TCP"),
        mconfig,
        '%s="%s",%d' % ("AT+SSLMIPSTART" if securemode == 2 else "AT+MIPSTART", host, PORT),
        "# send AT+MCONNECT right after CONNECT OK, or the server drops the link",
        "AT+MCONNECT=1,%d" % KEEPALIVE,
        "# 5. application data",
        'AT+MSUB="/%s/%s/user/get",0' % (pk, dn),
        "AT+MQTTMSGSET=0",
        'AT+MPUB="/%s/%s/user/update",0,0,"HelloWorld"' % (pk, dn),
    ]
    return {
        "client_id": cid,
        "username": username,
        "password": password,
        "host": host,
        "port": PORT,
        "mconfig": mconfig,
        "auth_body": body,
        "auth_body_length": length,
        "securemode": securemode,
        "script": script,
    }


def render(info):
    lines = [
        "MQTT direct (securemode=%d)" % info["securemode"],
        "  clientId  %s" % info["client_id"],
        "  username  %s" % info["username"],
        "  password  %s" % info["password"],
        "  host      %s" % info["host"],
        "  port      %d" % info["port"],
        "  %s" % info["mconfig"],
        "",
        "HTTP auth body (%d bytes, AT+HTTPDATA=%d,20000):" % (info["auth_body_length"], info["auth_body_length"]),
        "  %s" % info["auth_body"],
        "",
        "AT script (end every line with \\r; '#' lines are notes):",
    ]
    lines.extend(info["script"])
    return "\n".join(lines)


def main(argv=None):
    p = _Parser(prog="python -m tools.sign", description=__doc__.split("\n\n")[0])
    p.add_argument("--product-key", required=True, metavar="PK", help="the ProductKey")
    p.add_argument("--device-name", required=True, metavar="DN", help="the DeviceName")
    p.add_argument("--device-secret", metavar="DS", default=os.environ.get("ALIYUN_DEVICE_SECRET"),
                   help="or set ALIYUN_DEVICE_SECRET")
    p.add_argument("--client-id", metavar="ID",
                   help="device marker (default: PK.DN for MQTT, DN for HTTP auth as in the seed)")
    p.add_argument("--method", metavar="M",
                   help="hmacmd5 | hmacsha1 | hmacsha256 (default: hmacsha256 for MQTT, hmacmd5 for HTTP auth)")
    p.add_argument("--timestamp", metavar="MS", help="milliseconds, signed and sent when given")
    p.add_argument("--securemode", type=int, default=2, metavar="2|3", help="2 = TLS (default), 3 = plain TCP")
    p.add_argument("--region", default="cn-shanghai", help="the instance's region, for the MQTT host (default cn-shanghai)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    try:
        info = build(a.product_key, a.device_name, a.device_secret, a.client_id, a.method, a.timestamp,
                     a.securemode, a.region)
    except ValueError as e:  # firmware/sign.py names the field and never echoes a secret
        p.exit(2, "%s: error: %s\n" % (p.prog, e))
    if a.json:
        keys = ("client_id", "username", "password", "host", "port", "mconfig", "auth_body", "auth_body_length")
        print(json.dumps({k: info[k] for k in keys}))
    else:
        print(render(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
