# The local cloud's MQTT broker: amqtt with Aliyun's logins (auth.check_connect), CONNACK
# codes, per-device ACL, server-side kick and the platform's own replies (platform_replies).
#
# Broker choice: PyPI amqtt 0.12.1 (already pinned in requirements.txt), not Debian mosquitto.
#  - The checks need the shared registry and the tokens that the HTTP auth endpoint issues.
#    With amqtt both live in one Python process (python -m tools.cloud): one CloudState, no
#    IPC, no second implementation of the sign rule. Mosquitto would need a C plugin
#    (mosquitto-dev headers, a compiler in CI) plus a way to share tokens with the endpoint.
#  - Aliyun answers bad logins with CONNACK 2, 3, 4 or 5 depending on the fault. A mosquitto
#    2.0 auth plugin can only say "denied" (MOSQ_ERR_AUTH -> 5); amqtt lets a subclass write
#    any CONNACK code.
#  - Server-side kick, "a second login forces the first offline", exact publish QoS of each
#    uplink: a few lines here, vs. more C plugin work with mosquitto.
#  - No apt package, no root: `make venv` is all a fresh machine needs.
#  Cost: amqtt's public plugin API cannot choose the CONNACK code and runs the login hook
#  only after it has already taken over a session with the same clientId (so a client with a
#  wrong password could kick the legitimate one). AliyunBroker therefore overrides a few
#  private Broker methods; they are tied to the pinned amqtt==0.12.1 and guarded by
#  host_tests/test_cloud.py:
#    _handle_client_session  a dynamic registration request (mqttreg.login) is answered
#                            there and closed (CONNACK, the push, the close); any other
#                            CONNECT is checked first (auth.check_connect); on failure
#                            send CONNACK rc and close, before amqtt touches any session; on
#                            success kick older connections of the same device / clientId,
#                            set the 1.5 x keepalive cut-off, drop will messages, then go on.
#    _delete_session         deferred until the CONNECT is authorised (clean sessions).
#    _authenticate           returns the verdict computed above (no amqtt auth plugins).
#    _topic_filtering        the per-device ACL for SUBSCRIBE (refused -> SUBACK 0x80).
#    _handle_message_delivery  publish ACL (not delivered), uplink record with the QoS the
#                            device used, delivery at min(pub, sub) QoS (see _MinQos).
#    add_subscription / retain_message  QoS granted at most 1; no retained messages.
#    _create_server_instance  the plain port also takes TLS (first byte 0x16), as Aliyun's
#                            port 1883 does, and the TLS port is served the same way; see
#                            _DualServer (which counts refused handshakes).
import asyncio
import json
import logging
import socket
import ssl
import time

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.mqtt.connack import ConnackPacket

from tools.cloud import mqttreg, rrpc, shadow
from tools.cloud.auth import RC_OK, check_connect

log = logging.getLogger("localcloud.broker")

IDENT = "localcloud.identity"  # key in amqtt Session.attributes: ("device", pk, dn) | ("cloud",)
UPLINK_ENVELOPE = "$cloud/uplink"  # $cloud/uplink/{pk}/{dn}: JSON copy of each device publish


def topic_allowed(identity, topic):
    """May this identity publish to / subscribe to this topic (or filter)?"""
    if identity is None:
        return False
    if identity[0] == "cloud":
        return True
    _, pk, dn = identity
    lv = topic.split("/")
    if len(lv) < 3 or lv[0] != "":
        return False
    if lv[1:3] == [pk, dn]:  # /{pk}/{dn}/...
        return True
    if lv[1] == "sys" and lv[2:4] == [pk, dn]:  # /sys/{pk}/{dn}/...
        return True
    if lv[1:3] == ["ext", "ntp"] and lv[3:5] == [pk, dn]:  # /ext/ntp/{pk}/{dn}/...
        return True
    if lv[1:3] == ["ota", "device"] and len(lv) == 6 and lv[4:6] == [pk, dn] and lv[3] != "#":
        return True  # /ota/device/{inform|upgrade|progress|request}/{pk}/{dn}
    if lv[1] == "shadow" and len(lv) == 5 and lv[3:5] == [pk, dn] and lv[2] != "#":
        return True  # /shadow/{update|get}/{pk}/{dn}
    return False


def platform_replies(state, pk, dn, topic, data):
    """What the platform itself answers to a device publish: [(topic, payload bytes)].
      /sys/{pk}/{dn}/thing/event/{identifier}/post  -> ..._reply {"id","code","data","message",
                                                       "version","method"}; the code is
                                                       state.thing_reply_code (None: no reply)
      /shadow/update/{pk}/{dn}                      -> /shadow/get/{pk}/{dn}: the shadow's
                                                       reply (shadow.device_update)
      /sys/{pk}/{dn}/rrpc/response/{messageId}      -> none: the waiting RRPC call gets it
      /ext/ntp/{pk}/{dn}/request                    -> /ext/ntp/{pk}/{dn}/response with
                                                       serverRecvTime/serverSendTime (epoch ms
                                                       of the cloud's clock, state.now())
    """
    recv_ms = int(state.now() * 1000)
    lv = topic.split("/")
    if lv[1:3] == ["shadow", "update"] and lv[3:] == [pk, dn]:  # the shadow's answer (shadow.py)
        return shadow.device_update(state, pk, dn, data)
    if len(lv) == 7 and lv[1] == "sys" and lv[2:4] == [pk, dn] and lv[4:6] == ["rrpc", "response"]:
        rrpc.on_response(state, pk, dn, lv[6], data)  # to the RRPC call waiting for it (rrpc.py)
        return []
    if len(lv) == 8 and lv[1] == "sys" and lv[2:4] == [pk, dn] and lv[4:6] == ["thing", "event"] and lv[7] == "post":
        code = state.thing_reply_code
        if code is None:
            return []
        try:
            msg = json.loads(data)
            rid = msg["id"]
        except (ValueError, KeyError, TypeError):
            log.info("%s: no id in %r: no reply", topic, data[:80])
            return []
        method = msg.get("method") or "thing.event.%s.post" % lv[6]
        reply = {"id": rid, "code": code, "data": {}, "message": "success" if code == 200 else "error",
                 "version": "1.0", "method": method}
        return [(topic + "_reply", json.dumps(reply).encode())]
    if lv[1:3] == ["ext", "ntp"] and lv[3:5] == [pk, dn] and lv[5:] == ["request"]:
        try:
            sent = json.loads(data)["deviceSendTime"]
        except (ValueError, KeyError, TypeError):
            log.info("%s: no deviceSendTime in %r: no reply", topic, data[:80])
            return []
        reply = {"deviceSendTime": str(sent), "serverRecvTime": str(recv_ms),
                 "serverSendTime": str(int(state.now() * 1000))}
        return [("/ext/ntp/%s/%s/response" % (pk, dn), json.dumps(reply).encode())]
    return []


class _MinQos(dict):
    """A broadcast record for amqtt's queue. amqtt 0.12.1 delivers at the subscription's QoS
    (`broadcast.get("qos", sub_qos)`); MQTT (and Aliyun) deliver at min(published, granted)."""

    def get(self, key, default=None):
        if key == "qos" and "pub_qos" in self:
            return min(self["pub_qos"], 1 if default is None else default)
        return super().get(key, default)


class _Live:
    __slots__ = ("done", "handler", "identity", "session", "writer")

    def __init__(self, session, identity, handler, writer):
        self.session, self.identity, self.handler, self.writer = session, identity, handler, writer
        self.done = asyncio.Event()

    def abort(self):
        """Cut the TCP connection now (nothing flushed), whatever state amqtt's tasks are in."""
        transport = getattr(getattr(self.writer, "_writer", None), "transport", None)  # amqtt StreamWriterAdapter
        if transport is not None:
            transport.abort()


class _DualServer:
    """A listener that serves plain MQTT and MQTT over TLS on one port, as Aliyun's port 1883
    does: a connection whose first byte is 0x16 (TLS handshake record) gets TLS, any other
    (0x10 = CONNECT) stays plain; tls_only: every connection gets TLS (the TLS port).
    Duck-types the asyncio.Server parts amqtt uses. stats["tls_refused"] counts the
    handshakes that failed (a client that does not trust the certificate)."""

    def __init__(self, sock, ssl_context, on_connection, stats, tls_only=False):
        self.sockets = [sock]
        self._ssl = ssl_context
        self._on_connection = on_connection
        self._stats = stats
        self._tls_only = tls_only
        self._conns = set()
        self._task = asyncio.ensure_future(self._accept_loop())

    async def _accept_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sockets[0])
            t = asyncio.ensure_future(self._serve(conn))
            self._conns.add(t)
            t.add_done_callback(self._conns.discard)

    async def _serve(self, conn):
        streams = None
        try:
            streams = await self._accept(conn)
            if streams is not None:
                await self._on_connection(*streams)
        except asyncio.CancelledError:  # close(): the connection goes with the listener
            if streams is not None:
                streams[1].transport.abort()
            conn.close()
            raise

    async def _accept(self, conn):
        """(reader, writer) of a new connection, TLS or not by its first byte; None if it
        went away first."""
        loop = asyncio.get_running_loop()
        try:
            conn.setblocking(False)
            ready = loop.create_future()
            loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await asyncio.wait_for(ready, 30)
            finally:
                loop.remove_reader(conn.fileno())
            first = conn.recv(1, socket.MSG_PEEK)
            if not first:
                conn.close()
                return None
            tls = self._tls_only or first == b"\x16"
            reader = asyncio.StreamReader(limit=2 ** 16)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._ssl if tls else None,
                ssl_handshake_timeout=10 if tls else None)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            if isinstance(e, ssl.SSLError):
                self._stats["tls_refused"] += 1
            log.info("dual listener: connection dropped before MQTT: %r", e)
            conn.close()
            return None
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def close(self):
        self._task.cancel()
        for t in list(self._conns):
            t.cancel()
        self.sockets[0].close()

    async def wait_closed(self):
        await asyncio.gather(self._task, return_exceptions=True)


class AliyunBroker(Broker):
    """amqtt Broker with Aliyun's login rules. state: registry.CloudState;
    console: (username, password) of the privileged client; on_uplink(record) is called for
    every accepted device publish, in order. dual_tls=(certfile, keyfile) makes the "default"
    listener take TLS too (like Aliyun's port 1883) and serves the "tls" one the same way.
    stats (a dict kept across restarts): "connects" (MQTT CONNECTs seen, but the console's),
    "tls_refused" (failed TLS handshakes)."""

    def __init__(self, config, state, console, on_uplink=None, dual_tls=None, stats=None):
        super().__init__(config)
        self.cloud_state = state
        self.console = console
        self.on_uplink = on_uplink
        self.dual_tls = dual_tls
        self.stats = stats if stats is not None else {"connects": 0, "tls_refused": 0}
        self._live = {}  # handler -> _Live

    async def _create_server_instance(self, listener_name, listener_type, address, port, ssl_context):
        if listener_name not in ("default", "tls") or not self.dual_tls:
            return await super()._create_server_instance(listener_name, listener_type, address, port, ssl_context)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.dual_tls)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address or "127.0.0.1", port))
        sock.listen(128)
        sock.setblocking(False)
        return _DualServer(sock, ctx, lambda r, w: self.stream_connected(r, w, listener_name=listener_name),
                           self.stats, tls_only=listener_name == "tls")

    # -- connections ----------------------------------------------------------------------
    async def _handle_client_session(self, reader, writer, session, handler, server, listener_name):
        if not (self.console and session.username == self.console[0]):
            self.stats["connects"] += 1  # a device's (or anyone's but the console's)
        reg = mqttreg.login(self.cloud_state, session.client_id, session.username, session.password,
                            tls=session.ssl_object is not None)
        if reg is not None:  # a registration request: answered and closed, no session (mqttreg.py)
            log.info("registration %r user=%r: CONNACK %d", session.client_id, session.username, reg[0])
            try:
                await mqttreg.answer(writer, *reg)
            except (TimeoutError, OSError, ssl.SSLError) as e:  # peer already gone
                log.debug("answering a registration: %r", e)
            return
        rc, identity = check_connect(
            self.cloud_state, session.client_id, session.username, session.password, session.keep_alive,
            tls=session.ssl_object is not None, console=self.console)
        if rc != RC_OK:
            log.info("refused %r user=%r: CONNACK %d", session.client_id, session.username, rc)
            try:
                await ConnackPacket.build(0, rc).to_stream(writer)
                await writer.close()
            except (TimeoutError, OSError, ssl.SSLError) as e:  # peer already gone
                log.debug("closing refused connection: %r", e)
            return
        for other in list(self._live.values()):  # Aliyun: a new login forces the old one off
            if other.handler is not handler and (
                    (identity[0] == "device" and other.identity == identity)
                    or other.session.client_id == session.client_id):
                await self._kick(other)
        if session.clean_session:
            await Broker._delete_session(self, session.client_id)
        session.attributes[IDENT] = identity
        session.will_flag = False  # no will messages on Aliyun
        if identity[0] == "device":
            session.keep_alive = session.keep_alive * 3 // 2  # cut off after 1.5 x keepalive
            self.cloud_state.activate(identity[1], identity[2])
        handler.handle_read_timeout = lambda: asyncio.ensure_future(handler.handle_connection_closed())
        live = self._live[handler] = _Live(session, identity, handler, writer)
        log.info("online %r as %r", session.client_id, identity)
        try:
            await super()._handle_client_session(reader, writer, session, handler, server, listener_name)
        finally:
            self._live.pop(handler, None)
            live.done.set()
            log.info("offline %r as %r", session.client_id, identity)

    async def _delete_session(self, client_id):
        pass  # done in _handle_client_session once the CONNECT is authorised

    async def _authenticate(self, session, listener):
        return IDENT in session.attributes

    async def _kick(self, live, wait=3.0):
        log.info("kick %r %r", live.session.client_id, live.identity)
        await live.handler.handle_connection_closed()
        try:
            await asyncio.wait_for(live.done.wait(), wait)
        except TimeoutError:
            log.warning("kick of %r did not finish: connection aborted", live.session.client_id)
            live.abort()

    async def drop_everyone(self):
        """Close every client connection (before a restart): amqtt's own shutdown can hang
        while sessions still stream in."""
        for lv in list(self._live.values()):
            await self._kick(lv)

    def force_close(self):
        """Stop listening and cut every connection, whatever state amqtt is in: as when a
        broker process dies. Closing a listener leaves its accepted connections open (and
        cancelling amqtt's session task leaves its packet reader running: it would go on
        PUBACKing a device's publishes that nobody delivers), so each one is aborted."""
        for server in list(self._servers.values()):
            inst = getattr(server, "instance", None)
            if inst is not None:
                inst.close()
        for lv in list(self._live.values()):
            lv.abort()

    async def kick(self, pk, dn):
        targets = [lv for lv in self._live.values() if lv.identity == ("device", pk, dn)]
        for lv in targets:
            await self._kick(lv)
        return len(targets)

    async def downlink(self, topic, data, qos=0):
        """A message from the platform itself (a shadow control, an RRPC request) to its subscribers."""
        await self._broadcast_queue.put(_MinQos(session=None, topic=topic, data=data, pub_qos=qos))

    def online(self, pk, dn):
        return any(lv.identity == ("device", pk, dn) and lv.session.transitions.state == "connected"
                   for lv in self._live.values())

    def online_devices(self):
        return sorted({lv.identity[1:] for lv in self._live.values() if lv.identity[0] == "device"
                       and lv.session.transitions.state == "connected"})

    # -- topics -----------------------------------------------------------------------------
    async def _topic_filtering(self, session, topic, action):
        if action == Action.RECEIVE:
            return True  # what a session receives was checked when it subscribed
        return topic_allowed(session.attributes.get(IDENT), topic)

    async def _handle_message_delivery(self, client_session, handler, wait_deliver):
        msg = wait_deliver.result()
        if msg is None:
            return True
        topic = msg.topic
        if not topic or "#" in topic or "+" in topic or topic.startswith("$"):
            log.warning("%r: invalid publish topic %r, closing", client_session.client_id, topic)
            return False
        identity = client_session.attributes.get(IDENT)
        if not topic_allowed(identity, topic):
            log.info("%r %r may not publish to %r: dropped", client_session.client_id, identity, topic)
            return True
        data = bytes(msg.data or b"")
        qos = msg.qos or 0
        if identity[0] == "device":
            rec = {"ts": time.time(), "productKey": identity[1], "deviceName": identity[2],
                   "clientId": client_session.client_id, "topic": topic, "qos": qos,
                   "payload": data.decode("latin-1")}
            if self.on_uplink is not None:
                self.on_uplink(rec)
            env = "%s/%s/%s" % (UPLINK_ENVELOPE, identity[1], identity[2])
            await self._broadcast_queue.put(_MinQos(session=None, topic=env, data=json.dumps(rec).encode(),
                                                    pub_qos=0))
        await self._broadcast_queue.put(_MinQos(session=client_session, topic=topic, data=data, pub_qos=qos))
        if identity[0] == "device":
            for t, payload in platform_replies(self.cloud_state, identity[1], identity[2], topic, data):
                await self._broadcast_queue.put(_MinQos(session=None, topic=t, data=payload, pub_qos=0))
        return True

    async def add_subscription(self, subscription, session):
        topic_filter, qos = subscription
        return await super().add_subscription((topic_filter, min(qos, 1)), session)  # Aliyun: QoS 0/1

    async def retain_message(self, source_session, topic_name, data, qos=None):
        pass  # Aliyun keeps no retained messages


def listener_port(broker, name):
    return broker._servers[name].instance.sockets[0].getsockname()[1]


def broker_config(host, port, tls_port, certfile, keyfile):
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": "%s:%d" % (host, port)},
            "tls": {"type": "tcp", "bind": "%s:%d" % (host, tls_port), "ssl": True,
                    "certfile": certfile, "keyfile": keyfile},
        },
        "plugins": {},
        "timeout_disconnect_delay": 0,
    }


def make_certs(directory, host="127.0.0.1"):
    """The local cloud's CA and the server certificate it issued (certs.py, which also makes
    the man in the middle's): (ca.pem, server.pem, server.key)."""
    from tools.cloud.certs import make_pki

    pki = make_pki(directory, host)
    return (pki["ca"],) + pki["server"]
