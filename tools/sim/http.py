"""The module's HTTP client: HTTPINIT / HTTPPARA / HTTPDATA / HTTPACTION / HTTPREAD /
HTTPTERM, HTTPSSL, a real HTTP(S) request made in a helper thread and reported by the
`+HTTPACTION: <method>,<status>,<length>` URC. Hosts under aliyuncs.com go to the local
cloud's auth endpoint: an https:// URL (or AT+HTTPSSL=1) to its HTTPS twin (auths_url), with
the TLS settings of the family's HTTP SSL context (153 on the Air780 family) as they are
when HTTPACTION is sent, so seclevel 1 verifies the server (net.py); a plain URL, or https://
when no auths_url is given and nothing is to be verified, to auth_url (the path put in
front). Module statuses: 601 network error (no bearer, connection failed), 603 DNS error,
604 busy, 605 the TLS channel could not be set up (a failed handshake: a certificate that
does not verify, or no CA to verify with), 606 a TLS error after the handshake.

605 for a certificate that does not verify, not 606: the manual's words are "SSL channel
setup failed" (605) and "SSL communication alert error" (606). Verifying the server is part
of setting up the channel; the module refuses before any alert comes from the server.
"""
import http.client
import socket
import ssl
import time
from urllib.parse import urlsplit

from tools.sim.core import Part
from tools.sim.dialect import CME_NOT_ALLOWED, ERROR, OK, cme, decode_escapes, integer, lines, set_params
from tools.sim.net import TLSSetupError, close_socket, resolve

# HTTPPARA tags the module takes without doing anything with them here
_IGNORED_TAGS = ("CID", "TIMEOUT", "REDIR", "PROIP", "PROPORT")


def range_header(start, end):
    """The Range header of a GET with HTTPPARA "BREAK" / "BREAKEND" (both families' manual,
    docs/ota.md): BREAKEND above BREAK: that range; below (or equal): BREAK to the end of
    the file; both 0: no range. Whether BREAKEND is the last byte or one past it the manual
    does not say; the virtual module takes it as HTTP's last byte (inferred)."""
    if not start and not end:
        return None
    return "Range: bytes=%d-%s" % (start, end if end > start else "")


class Http(Part):
    """auth_url: the local auth endpoint (http://127.0.0.1:P[/base]) that *.aliyuncs.com
    reaches; auths_url: its HTTPS twin (https://127.0.0.1:P), where an https:// URL goes
    when given; http_delay: seconds an action takes at least; http_timeout: the request's own."""

    OPTIONS = {"auth_url": None, "auths_url": None, "http_delay": 0.0, "http_timeout": 20.0}
    COMMANDS = {"+HTTPINIT": "init", "+HTTPTERM": "term", "+HTTPPARA": "para", "+HTTPDATA": "data",
                "+HTTPACTION": "action", "+HTTPREAD": "read", "+HTTPSSL": "httpssl"}

    def __init__(self, core, **options):
        super().__init__(core, **options)
        for name in ("auth_url", "auths_url"):
            if getattr(self, name):
                setattr(self, name, getattr(self, name).rstrip("/"))
        self._http = None               # dict while HTTPINIT is active
        self._ssl = 0                   # AT+HTTPSSL

    def reset(self):
        self._http = None
        self._ssl = 0

    def httpssl(self, kind, args):
        if kind == "read":
            return lines("+HTTPSSL: %d" % self._ssl) + OK
        self._ssl = integer(set_params(kind, args, 1)[0], 0, 1)
        return OK

    def network_lost(self):
        http = self._http
        if http and http["busy"]:
            token = http["token"]
            self.core.post(lambda: self._done(http, token, 1, 601, b""))

    def init(self, kind, args):
        if kind != "exec":
            return ERROR
        if self._http is not None:
            return cme(CME_NOT_ALLOWED)
        self._http = {"url": None, "headers": [], "data": b"", "busy": False, "token": None,
                      "status": None, "body": None, "break": 0, "breakend": 0}
        return OK

    def term(self, kind, args):
        if kind != "exec" or self._http is None:
            return ERROR
        self._http = None
        return OK

    def para(self, kind, args):
        p = set_params(kind, args, 2)  # tag, value
        if self._http is None:
            return ERROR
        tag, value = p[0][0].upper(), decode_escapes(p[1][0])
        headers = self._http["headers"]
        if tag == "URL":
            if len(value) > self.core.personality.url_max or not value:
                return ERROR
            self._http["url"] = value
        elif tag == "USER_DEFINED":
            headers.extend(h for h in value.split("\r\n") if h)
        elif tag == "CONTENT":
            headers.append("Content-Type: " + value)
        elif tag == "UA":
            headers.append("User-Agent: " + value)
        elif tag in ("BREAK", "BREAKEND"):
            self._http[tag.lower()] = integer(p[1], 0)
        elif tag not in _IGNORED_TAGS:
            return ERROR
        return OK

    def data(self, kind, args):
        p = set_params(kind, args, 2)  # length, ms
        if self._http is None:
            return ERROR
        n, ms = integer(p[0], 0, 319488), integer(p[1], 1000, 120000)
        core = self.core
        if not core.reply_pause():
            return None
        core.emit(lines("DOWNLOAD"))
        data = core.read_data(n, ms / 1000.0)
        if data is None:
            return None if core.aborted else ERROR
        self._http["data"] = data
        return OK

    def action(self, kind, args):
        p = set_params(kind, args, 1)  # method
        if self._http is None:
            return ERROR
        method = integer(p[0], 0, 2)
        http = self._http
        core = self.core
        if not http["url"]:
            return ERROR
        if http["busy"]:
            core.after(lambda: core.emit(lines("+HTTPACTION: %d,604,0" % method)))
            return OK
        http["busy"] = True
        http["status"] = http["body"] = None
        token = object()
        http["token"] = token
        if not core.net.bearer_open:
            core.after(lambda: self._done(http, token, method, 601, b""))
            return OK
        settings = None
        if self._ssl or http["url"].lower().startswith("https:"):
            context = core.personality.http_ssl_context
            try:
                settings = core.net.tls_settings(context)
            except TLSSetupError as e:      # nothing to verify with: no channel
                core.net.tls_refused(context, urlsplit(http["url"]).hostname or "", e)
                core.after(lambda: self._done(http, token, method, 605, b""))
                return OK
        headers = list(http["headers"])
        ranged = range_header(http["break"], http["breakend"]) if method == 0 else None
        if ranged:
            headers.append(ranged)
        req = (method, http["url"], headers, http["data"])
        start = time.monotonic()
        core.after(lambda: core.spawn(self._thread, "vmodule-http", http, token, req, settings, start))
        return OK

    def _thread(self, http, token, req, settings, start):
        method, url, headers, data = req
        status, body = request(method, url, headers, data, (self.auth_url, self.auths_url),
                               self.http_timeout, settings, self.core.net)
        wait = max(0.0, self.http_delay - (time.monotonic() - start))
        self.core.post(lambda: self._done(http, token, method, status, body), wait)

    def _done(self, http, token, method, status, body):
        if http is not self._http or http["token"] is not token:
            return      # HTTPTERM or a restart came first
        http["busy"] = False
        if not self.core.net.bearer_open:
            status, body = 601, b""
        http["status"], http["body"] = status, body
        self.core.emit(lines("+HTTPACTION: %d,%d,%d" % (method, status, len(body))))

    def read(self, kind, args):
        if self._http is None or self._http["body"] is None or kind not in ("exec", "set"):
            return ERROR
        body = self._http["body"]
        if kind == "set":
            p = set_params(kind, args, 2)  # start, size
            start, size = integer(p[0]), integer(p[1], 1)
            body = body[start:start + size]
        return lines("+HTTPREAD: %d" % len(body)) + body + OK


def request(method, url, headers, data, bases, timeout, tls=None, net=None):
    """Perform the module's HTTP request; returns (status, body). bases: (auth_url,
    auths_url) of the local cloud; tls: the SSL context's settings (Net.tls_settings) when
    the request goes over TLS, None for plain HTTP; net: the Net that makes the handshake."""
    try:
        u = urlsplit(url)
    except ValueError:
        return 603, b""
    if u.scheme not in ("http", "https") or not u.hostname:
        return 603, b""
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    where = resolve(u.hostname)
    auth_url, auths_url = bases
    if where == "cloud":
        if tls is not None and auths_url:
            base = auths_url
        elif tls is not None and tls[1] > 0:    # an endpoint that could never be verified
            net.tls_refused(tls[0], u.hostname, "no HTTPS endpoint to verify (auths_url)")
            return 605, b""
        else:
            base, tls = auth_url, None  # plain HTTP, or its stand-in for an unverified https://
        if not base:
            return 603, b""
        b = urlsplit(base)
        thost, tport = b.hostname, b.port
        path = b.path.rstrip("/") + path
    elif where == "local":
        thost, tport = "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
    else:
        return 603, b""
    try:
        sock = socket.create_connection((thost, tport), timeout=timeout)
    except OSError:
        return 601, b""
    if tls is not None:
        try:
            sock = net.tls_wrap(tls, sock, u.hostname)
        except (OSError, ssl.SSLError):
            close_socket(sock)
            return 605, b""
    conn = http.client.HTTPConnection(thost, tport, timeout=timeout)
    conn.sock = sock
    try:
        verb = ("GET", "POST", "HEAD")[method]
        conn.putrequest(verb, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", u.netloc)
        names = set()
        for h in headers:
            name, _, value = h.partition(":")
            names.add(name.strip().lower())
            conn.putheader(name.strip(), value.strip())
        if method == 1 and "content-length" not in names:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data if method == 1 and data else None)
        resp = conn.getresponse()
        body = resp.read() if method != 2 else b""
        return resp.status, body
    except ssl.SSLError:
        return 606, b""
    except (OSError, http.client.HTTPException):
        return 601, b""
    finally:
        conn.close()
