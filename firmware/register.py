# Dynamic registration (one type, one secret); the secret it gets is stored by firmware/secret.py.
#
# With only `product_secret` in config.json the device asks the platform for its
# DeviceSecret once: POST /auth/register/device (through the module, the bearer open) with
# auth.register_form(pk, dn, ps, random, sign_method). The secret comes only once, so it is
# stored at once, atomically: written to secret.json.tmp, then os.rename'd over
# secret.json (next to config.json): a reset mid-write leaves the old file (or none), never
# half a secret. config.load() merges secret.json (secret.merge()) so every later start uses it and
# never registers again. The secret is never logged, and neither is anything the answer or
# secret.json holds (the redaction rule, firmware/log.py): errors name what was wrong.
#
#   6289 "already active": the platform gave this device its secret before and will not give
#   it again (a lost secret.json, a reflashed board, or two boards with one DeviceName). The
#   log says what to do: copy the DeviceSecret from the console into config.json, or reset
#   the device in the console so it may register again.
import random

from firmware import aliyun, auth, log
from firmware.errors import CloudError
from firmware.port import const, sleep_ms, ticks_add, ticks_diff, ticks_ms
from firmware.secret import FILE, load, merge, path_for, save  # noqa: F401  (the stored secret's home)

_TAG = "register"
PATH = "/auth/register/device"
_ALREADY_ACTIVE = const(6289)
_FOREVER = (5001, 6288, 6289, 6600)  # answers a retry will not change (until a console fix)

ALREADY_ACTIVE_HELP = (
    "device %s/%s is already active: the platform gives a DeviceSecret only once and will not "
    "send it again. Copy the DeviceSecret from the IoT console (device details) into "
    "config.json as \"device_secret\", or reset the device in the console (delete and add it "
    "again) so it may register once more."
)


def _random():
    return "%08x%08x" % (random.getrandbits(32), random.getrandbits(32))  # boards seed it from hardware


def register(modem, cfg, rnd=None):
    """One registration (bearer open): stores the secret, puts it into cfg; CloudError for a
    refusal (6289 explained in the log), ModemError / OSError for the rest."""
    pk, dn = cfg["product_key"], cfg["device_name"]
    body = auth.register_form(pk, dn, cfg["product_secret"], rnd or _random(), cfg["sign_method"])
    log.info(_TAG, "registering %s/%s (dynamic registration)", pk, dn)
    try:
        data = auth.post_form(modem, cfg, PATH, body)
    except CloudError as e:
        if e.code == _ALREADY_ACTIVE:
            log.error(_TAG, ALREADY_ACTIVE_HELP, pk, dn)
        raise
    ds = data.get("deviceSecret") if isinstance(data, dict) else None
    if not ds or not isinstance(ds, str):
        raise CloudError(200, "%s: reply without deviceSecret" % PATH)
    path = cfg.get("secret_file") or FILE
    save(path, pk, dn, ds)
    cfg["device_secret"] = ds
    log.info(_TAG, "registered: DeviceSecret stored in %s", path)
    return ds


def provision(modem, cfg, until=None):
    """Before the link starts: make sure cfg has a device_secret, registering if needed
    (module up, bearer open). Retries failures (refusals slowly: backoff_refused_ms, after
    the log said what to fix). True when the secret is there; False if until() ended it."""
    if cfg.get("device_secret"):
        return True
    delay = 0
    while until is None or not until():
        try:
            modem.start()
            if not aliyun.load_ca(modem, cfg):  # the answer holds the new DeviceSecret
                log.warn(_TAG, "this module cannot verify the registration server's certificate")
            modem.bearer_open(cfg.get("apn"))
            register(modem, cfg)
            return True
        except CloudError as e:
            log.error(_TAG, "registration refused: %s", e)
            wait = cfg.get("backoff_refused_ms", 600000) if e.code in _FOREVER else None
        except Exception as e:  # module, network, flash: try again
            log.error(_TAG, "registration failed: %s", log.err(e))
            wait = None
        if wait is None:
            delay = min(cfg.get("backoff_max_ms", 60000), max(cfg.get("backoff_min_ms", 1000), delay * 2))
            wait = delay
        log.info(_TAG, "next registration attempt in %d s", wait // 1000)
        _wait(modem, wait, until)
    return False


def _wait(modem, ms, until):
    deadline = ticks_add(ticks_ms(), ms)
    while ticks_diff(deadline, ticks_ms()) > 0 and (until is None or not until()):
        try:
            modem.sleep(min(1000, max(0, ticks_diff(deadline, ticks_ms()))))  # feeds the watchdog
        except Exception:
            sleep_ms(100)
