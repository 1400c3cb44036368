"""The local cloud's OTA service, as Aliyun's works for a device (its "OTA updates" topic
page, docs/ota.md): an update job starts from a package built by tools/ota_package.py,
which is put where the cloud's HTTP(S) endpoint serves it (STATE/ota/NAME, GET with Range:
206 Partial Content, as OSS answers); the job goes to /ota/device/upgrade/{pk}/{dn} with
that URL on an aliyuncs.com host (the virtual module takes it to this cloud), the size and
the digest; the device's reports on /ota/device/progress/{pk}/{dn} are read from the
uplink record. Every GET served is recorded (STATE/ota/served.jsonl) so that tests see
which ranges a device asked for.

    python -m tools.cloud.console --state DIR ota PK DN build/ota-1.3.0.bin [--sign-method MD5]
"""
import hashlib
import json
import os
import re
import shutil
import threading
import time

from tools.ota_package import read as read_package

OTA_HOST = "iotx-ota.oss-cn-shanghai.aliyuncs.com"  # where Aliyun's packages live (OSS)
_lock = threading.Lock()


def ota_dir(state_dir):
    return os.path.join(state_dir, "ota")


def stage(state_dir, package, tamper=False):
    """Copy the package where the endpoint serves it; its name, size and digests. tamper:
    one byte of the served copy is flipped after the digests were taken (a corrupted
    download)."""
    with open(package, "rb") as f:
        data = f.read()
    version = read_package(package)[0]
    d = ota_dir(state_dir)
    os.makedirs(d, exist_ok=True)
    name = "%s-%s.bin" % (version, hashlib.sha256(data).hexdigest()[:12])
    digests = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    if tamper:
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
    with open(os.path.join(d, name + ".tmp"), "wb") as f:
        f.write(data)
    os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    return {"name": name, "version": version, "size": len(data), **digests}


def job_message(staged, sign_method="SHA256", scheme="https", rid=None, **override):
    """The upgrade message the platform pushes (a single-file package over HTTPS)."""
    method = sign_method.upper()
    data = {"size": staged["size"], "version": staged["version"], "isDiff": 0,
            "url": "%s://%s/ota/%s" % (scheme, OTA_HOST, staged["name"]),
            "md5": staged["md5"], "sign": staged["md5"] if method == "MD5" else staged["sha256"],
            "signMethod": "MD5" if method == "MD5" else method, "module": "default"}
    data.update(override)
    return json.dumps({"code": "1000", "data": data, "id": rid or int(time.time() * 1000), "message": "success"})


def upgrade_topic(pk, dn):
    return "/ota/device/upgrade/%s/%s" % (pk, dn)


def progress_topic(pk, dn):
    return "/ota/device/progress/%s/%s" % (pk, dn)


def progress(uplinks, pk, dn):
    """[(step as int, desc)] of the device's progress reports among `uplinks`."""
    out = []
    for topic, payload, _qos in uplinks:
        if topic == progress_topic(pk, dn):
            p = json.loads(payload).get("params", {})
            out.append((int(p.get("step")), p.get("desc", "")))
    return out


def served(state_dir):
    """[{"file", "range", "status", "bytes"}] of every package GET the endpoint answered."""
    try:
        with open(os.path.join(ota_dir(state_dir), "served.jsonl")) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def serve(handler, state_dir):
    """Answer GET /ota/NAME on the auth endpoint's handler: the file, or the part a Range
    header (bytes=a-b, bytes=a-) asks for (206), 416 when it starts past the end."""
    name = handler.path.split("?")[0][len("/ota/"):]
    path = os.path.join(ota_dir(state_dir), name)
    if not re.fullmatch(r"[\w.-]+\.bin", name) or not os.path.isfile(path):
        return _answer(handler, state_dir, name, None, 404, b"not found")
    with open(path, "rb") as f:
        data = f.read()
    rng = handler.headers.get("Range")
    if rng is None:
        return _answer(handler, state_dir, name, None, 200, data)
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
    if not m:
        return _answer(handler, state_dir, name, rng, 400, b"bad range")
    a = int(m.group(1))
    b = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
    if a >= len(data) or b < a:
        return _answer(handler, state_dir, name, rng, 416, b"", {"Content-Range": "bytes */%d" % len(data)})
    return _answer(handler, state_dir, name, rng, 206, data[a:b + 1],
                   {"Content-Range": "bytes %d-%d/%d" % (a, b, len(data))})


def _answer(handler, state_dir, name, rng, status, body, headers=None):
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)
    d = ota_dir(state_dir)
    if os.path.isdir(d):
        with _lock, open(os.path.join(d, "served.jsonl"), "a") as f:
            f.write(json.dumps({"file": name, "range": rng, "status": status, "bytes": len(body)}) + "\n")


def clear(state_dir):
    shutil.rmtree(ota_dir(state_dir), ignore_errors=True)
