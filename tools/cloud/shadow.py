"""The local cloud's device shadows, by Aliyun's rules (docs/aliyun.md section 13): one JSON
document per device, {"state": {"reported", "desired"}, "metadata", "version", "timestamp"},
kept in state_dir/shadow.json (written whole to a temporary file, then renamed, as
registry.py keeps state.json) so that a restarted cloud keeps them.

    device_update(state, pk, dn, data)   a device's publish on /shadow/update/{pk}/{dn}:
                                         [(topic, payload)], the answer on /shadow/get/{pk}/{dn}
    set_desired(state, pk, dn, desired)  the console's "update desired": (version,
                                         [(topic, control message)])
    document(state, pk, dn)              the document as it is now (a copy)

A device's update or delete carries a version above the document's (else errorcode 409);
-1 resets the document to version 0. The error codes are the ones the platform documents
(400 bad JSON ... 409 version conflict). `state` is the cloud's CloudState (registry.py):
its lock, its clock (now(), moved by advance_clock) and its state directory.
"""
import copy
import json
import os
import threading

FILE = "shadow.json"
ATTRS_MAX = 128  # reported attributes a shadow holds (errorcode 408 beyond)
ERRORS = {400: "invalid JSON", 401: "method is missing", 402: "state is missing", 403: "invalid version",
          404: "reported is missing", 405: "reported is blank", 406: "invalid method", 407: "the JSON is empty",
          408: "reported holds more than %d attributes" % ATTRS_MAX, 409: "version conflict"}


class Shadows:
    def __init__(self, path, clock):
        self.path, self.clock = path, clock
        self.lock = threading.RLock()
        self.docs = {}  # "pk/dn" -> document
        if path and os.path.exists(path):
            with open(path) as f:
                self.docs = json.load(f)

    def doc(self, pk, dn):
        return self.docs.setdefault("%s/%s" % (pk, dn), {"state": {"reported": {}, "desired": {}},
                                                         "metadata": {"reported": {}, "desired": {}},
                                                         "version": 0, "timestamp": int(self.clock())})

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.docs, f, indent=1)
        os.replace(tmp, self.path)


def _shadows(state):
    with state.lock:
        s = getattr(state, "shadows", None)
        if s is None:
            path = getattr(state, "state_path", None)
            s = state.shadows = Shadows(os.path.join(os.path.dirname(path), FILE) if path else None, state.now)
        return s


def _topic(pk, dn):
    return "/shadow/get/%s/%s" % (pk, dn)


def _out(pk, dn, msg):
    return [(_topic(pk, dn), json.dumps(msg).encode())]


def _error(pk, dn, now, code):
    return _out(pk, dn, {"method": "reply", "payload": {"status": "error", "content": {
        "errorcode": str(code), "errormessage": ERRORS[code]}}, "timestamp": now})


def _merge(section, meta, values, now):
    """Values into one section (reported or desired); None or "null" removes a key."""
    for k, v in values.items():
        if v is None or v == "null":
            section.pop(k, None)
            meta.pop(k, None)
        else:
            section[k] = v
            meta[k] = {"timestamp": now}


def _public(d):
    return {"state": copy.deepcopy(d["state"]), "metadata": copy.deepcopy(d["metadata"])}


def document(state, pk, dn):
    s = _shadows(state)
    with s.lock:
        return copy.deepcopy(s.doc(pk, dn))


def device_update(state, pk, dn, data):
    """A device's message on /shadow/update/{pk}/{dn}: the shadow's answer(s)."""
    s = _shadows(state)
    now = int(state.now())
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return _error(pk, dn, now, 400)
    if not isinstance(msg, dict):
        return _error(pk, dn, now, 400)
    if not msg:
        return _error(pk, dn, now, 407)
    method = msg.get("method")
    if method is None:
        return _error(pk, dn, now, 401)
    if method not in ("update", "get", "delete"):
        return _error(pk, dn, now, 406)
    with s.lock:
        d = s.doc(pk, dn)
        if method == "get":
            return _out(pk, dn, {"method": "reply", "payload": dict(_public(d), status="success"),
                                 "version": d["version"], "timestamp": now})
        st, version = msg.get("state"), msg.get("version")
        if not isinstance(st, dict):
            return _error(pk, dn, now, 402)
        if isinstance(version, bool) or not isinstance(version, int) or version < -1:
            return _error(pk, dn, now, 403)
        if version == -1:  # the documented reset: an empty shadow of version 0
            s.docs.pop("%s/%s" % (pk, dn))
            s.doc(pk, dn)
            s.save()
            return _out(pk, dn, {"method": "reply", "payload": {"status": "success", "version": 0}, "timestamp": now})
        if version <= d["version"]:
            return _error(pk, dn, now, 409)
        reported, desired = st.get("reported"), st.get("desired")
        if method == "delete":
            if reported == "null":
                d["state"]["reported"], d["metadata"]["reported"] = {}, {}
            elif isinstance(reported, dict):
                _merge(d["state"]["reported"], d["metadata"]["reported"], {k: None for k in reported}, now)
            else:
                return _error(pk, dn, now, 404)
        else:
            if reported is None and desired is None:
                return _error(pk, dn, now, 404)
            if reported is not None and not isinstance(reported, dict) and reported != "null":
                return _error(pk, dn, now, 404)
            if reported == {}:
                return _error(pk, dn, now, 405)
            new = dict(d["state"]["reported"])
            if isinstance(reported, dict):
                _merge(new, {}, reported, now)
                if len(new) > ATTRS_MAX:
                    return _error(pk, dn, now, 408)
                _merge(d["state"]["reported"], d["metadata"]["reported"], reported, now)
            elif reported == "null":
                d["state"]["reported"], d["metadata"]["reported"] = {}, {}
            if desired == "null":
                d["state"]["desired"], d["metadata"]["desired"] = {}, {}
            elif isinstance(desired, dict):
                _merge(d["state"]["desired"], d["metadata"]["desired"], desired, now)
        d["version"], d["timestamp"] = version, now
        s.save()
        return _out(pk, dn, {"method": "reply", "payload": {"status": "success", "version": version}, "timestamp": now})


def set_desired(state, pk, dn, desired, version=None):
    """The application's update of state.desired (the console): the document's next version
    (or `version`, which must be above it: ValueError otherwise) and the control message
    the shadow sends the device."""
    if not isinstance(desired, dict) or not desired:
        raise ValueError("desired must be a non-empty JSON object")
    s = _shadows(state)
    now = int(state.now())
    with s.lock:
        d = s.doc(pk, dn)
        v = d["version"] + 1 if version is None else version
        if v <= d["version"]:
            raise ValueError("version %d is not above the shadow's %d (errorcode 409)" % (v, d["version"]))
        _merge(d["state"]["desired"], d["metadata"]["desired"], desired, now)
        d["version"], d["timestamp"] = v, now
        s.save()
        msg = {"method": "control", "payload": dict(_public(d), status="success"), "version": v, "timestamp": now}
        return v, _out(pk, dn, msg)
