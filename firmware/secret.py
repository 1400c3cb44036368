# What registration stored (secret.json beside config.json): where it lives, read, written
# atomically, and merged into the config at load. Its own small file so that loading the
# config never loads the registration flow (firmware/register.py), which writes it.
# It holds the DeviceSecret (HTTPS or MQTT registration of a pre-registered device), or the
# clientId and deviceToken of a registration without pre-registration ("mqtt_nwl"), merged
# as cfg["token_client_id"] / cfg["device_token"]. None of them is ever logged.
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
    d = _entry(path, pk, dn)
    return d.get("device_secret") if d else None


def _entry(path, pk, dn):
    """What secret.json holds for pk/dn (a dict with device_secret, or client_id and
    device_token), or None (no file, another device's, unreadable: logged)."""
    try:
        with open(path) as f:
            d = json.loads(f.read())
    except OSError:
        return None
    except ValueError:
        log.error(_TAG, "%s is not valid JSON: ignored (registering again)", path)
        return None
    if not isinstance(d, dict) or not (d.get("device_secret") or (d.get("device_token") and d.get("client_id"))):
        log.error(_TAG, "%s holds neither a device_secret nor a client_id and device_token: ignored", path)
        return None
    if d.get("product_key") != pk or d.get("device_name") != dn:
        log.warn(_TAG, "%s is for another device, not %s/%s: ignored", path, pk, dn)
        return None
    return d


def save(path, pk, dn, ds, opener=open, token=None):
    """Store the secret (or token=(client_id, device_token) with ds None) atomically: a temp
    file, flushed and closed, renamed over `path`. A failure leaves the previous file as it
    was (and raises OSError)."""
    tmp = path + ".tmp"
    d = {"product_key": pk, "device_name": dn}
    if ds:
        d["device_secret"] = ds
    elif token:
        d["client_id"], d["device_token"] = token
    else:
        raise ValueError("save: a device_secret or a token")
    text = json.dumps(d)
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
    """Called by config.load(): with no device_secret in config.json, take the stored one
    (or the stored clientId and deviceToken).
    Remembers where the secret lives (cfg["secret_file"]). Returns where the secret came
    from: "config", "stored" or None (registration needed)."""
    cfg["secret_file"] = path_for(config_path)
    if cfg.get("device_secret"):
        return "config"
    d = _entry(cfg["secret_file"], cfg["product_key"], cfg["device_name"])
    if d is None:
        return None
    if d.get("device_secret"):
        cfg["device_secret"] = d["device_secret"]
    else:
        cfg["token_client_id"], cfg["device_token"] = d["client_id"], d["device_token"]
    return "stored"
