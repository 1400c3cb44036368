# The stored DeviceSecret (secret.json beside config.json): where it lives, read, written
# atomically, and merged into the config at load. Its own small file so that loading the
# config never loads the registration flow (firmware/register.py), which writes it.
import json
import os

from firmware import log

_TAG = "secret"
FILE = "secret.json"


def path_for(config_path):
    """secret.json in the directory of config.json (the flash root on a board)."""
    i = config_path.rfind("/")
    return FILE if i < 0 else config_path[: i + 1] + FILE


def load(path, pk, dn):
    """The stored DeviceSecret for pk/dn, or None (no file, another device's, unreadable)."""
    try:
        with open(path) as f:
            d = json.loads(f.read())
    except OSError:
        return None
    except ValueError:
        log.error(_TAG, "%s is not valid JSON: ignored (registering again)", path)
        return None
    if not isinstance(d, dict) or not d.get("device_secret"):
        log.error(_TAG, "%s holds no device_secret: ignored", path)
        return None
    if d.get("product_key") != pk or d.get("device_name") != dn:
        log.warn(_TAG, "%s is for another device, not %s/%s: ignored", path, pk, dn)
        return None
    return d["device_secret"]


def save(path, pk, dn, ds, opener=open):
    """Store the secret atomically: a temp file, flushed and closed, renamed over `path`.
    A failure leaves the previous file as it was (and raises OSError)."""
    tmp = path + ".tmp"
    text = json.dumps({"product_key": pk, "device_name": dn, "device_secret": ds})
    try:
        with opener(tmp, "w") as f:
            n = f.write(text)
            if n is not None and n != len(text):
                raise OSError("short write to %s" % tmp)
            if hasattr(f, "flush"):
                f.flush()
        _sync()
        os.rename(tmp, path)
        _sync()
    except Exception:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _sync():
    sync = getattr(os, "sync", None)  # flash filesystems: commit now
    if sync:
        try:
            sync()
        except OSError:
            pass


def merge(cfg, config_path):
    """Called by config.load(): with no device_secret in config.json, take the stored one.
    Remembers where the secret lives (cfg["secret_file"]). Returns where the secret came
    from: "config", "stored" or None (registration needed)."""
    cfg["secret_file"] = path_for(config_path)
    if cfg.get("device_secret"):
        return "config"
    ds = load(cfg["secret_file"], cfg["product_key"], cfg["device_name"])
    if ds is None:
        return None
    cfg["device_secret"] = ds
    return "stored"
