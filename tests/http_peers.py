"""HTTP peers for the sink tests: small but honest implementations of the Splunk HEC, Elasticsearch
``_bulk``, Slack, PagerDuty Events v2 and a generic webhook receiver, each a ThreadingHTTPServer on
127.0.0.1 (HTTP/1.1, keep-alive) in a thread, recording what arrived and scriptable to fail:

- ``down()`` / ``up()``: the port is closed (connection refused, pooled connections cut), then back;
- ``fail(n, status, body, headers, path, skip)``: the next n requests (after ``skip``) get that
  answer, unprocessed;
- ``slow(n, seconds)``: the next n requests are processed, then answered only after ``seconds``
  (past the client's timeout: the data arrived but the sender never heard so).
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes  # as sent (maybe gzipped)
    body: bytes  # decoded


@dataclass
class _Fault:
    times: int
    kind: str  # "status" | "slow"
    path: str | None = None
    status: int = 500
    body: bytes | Callable[[Req], bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    skip: int = 0  # matching requests let through before the fault starts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that gave up (timeout tests): not an error
        pass


class Peer:
    """Base peer: subclasses implement :meth:`handle` (request → status, headers, body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[Req] = []
        self.faults: list[_Fault] = []
        self.port = 0
        self.server: _Server | None = None
        self.conns: set[socket.socket] = set()
        self.tls: tuple[str, str] | None = None  # (certfile, keyfile): serve HTTPS

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Peer:
        self.up()
        return self

    def up(self) -> None:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes

            def setup(self):
                super().setup()
                with peer.lock:
                    peer.conns.add(self.connection)

            def finish(self):
                with peer.lock:
                    peer.conns.discard(self.connection)
                super().finish()

            def log_message(self, *args):
                pass

            def _any(self):
                peer._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = _any

        self.server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def down(self) -> None:
        """Close the port and cut open connections, as a crashed server would."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    stop = down

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- scripting -------------------------------------------------------------------------------

    def fail(self, times: int, status: int = 500, body: bytes | Callable[[Req], bytes] = b"",
             headers: dict[str, str] | None = None, path: str | None = None, skip: int = 0) -> None:
        with self.lock:
            self.faults.append(_Fault(times, "status", path, status, body, headers or {}, skip=skip))

    def slow(self, times: int, seconds: float, path: str | None = None) -> None:
        with self.lock:
            self.faults.append(_Fault(times, "slow", path, seconds=seconds))

    def _fault(self, req: Req) -> _Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and (f.path is None or req.path.startswith(f.path)):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    f.times -= 1
                    return f
        return None

    # -- serving ---------------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in h.headers.items()}
        body = raw
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(raw)
            except OSError:
                body = b"\x00<not gzip>"
        req = Req(h.command, h.path, headers, raw, body)
        with self.lock:
            self.requests.append(req)
        fault = self._fault(req)
        if fault and fault.kind == "status":
            out = fault.body(req) if callable(fault.body) else fault.body
            status, extra, out = fault.status, fault.headers, out
        else:
            status, extra, out = self.handle(req)
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)
        try:
            h.send_response(status)
            for k, v in {"Content-Type": "application/json", **extra}.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
        except OSError:
            h.close_connection = True

    def handle(self, req: Req) -> tuple[int, dict, bytes]:
        raise NotImplementedError

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]


def _j(doc) -> bytes:
    return json.dumps(doc).encode()


class HecPeer(Peer):
    """Splunk HEC: token auth, concatenated JSON events, gzip, indexer acknowledgement per channel."""

    def __init__(self, token: str, *, ack: bool = False):
        super().__init__()
        self.token, self.ack_enabled = token, ack
        self.events: list[dict] = []
        self.poison: set[str] = set()  # alert ids answered with 400 code 6
        self.indexes: set[str] | None = None  # when set, other indexes are refused (400 code 7)
        self.ack_after_polls = 0  # an ack id reads false this many times, then true
        self.never_ack = False
        self.acks: dict[str, dict[int, int]] = defaultdict(dict)  # channel → ack id → polls so far
        self.next_ack: Counter = Counter()

    def alert_ids(self) -> Counter:
        with self.lock:
            return Counter(e["fields"]["alert_id"] for e in self.events)

    def _auth(self, req: Req):
        auth = req.headers.get("authorization")
        if not auth:
            return 401, {}, _j({"text": "Token is required", "code": 2})
        if auth != f"Splunk {self.token}":
            return 403, {}, _j({"text": "Invalid token", "code": 4})
        return None

    def handle(self, req):
        if req.method != "POST":
            return 405, {}, _j({"text": "Method not allowed", "code": 404})
        if (denied := self._auth(req)) is not None:
            return denied
        channel = req.headers.get("x-splunk-request-channel")
        if req.path.startswith("/services/collector/ack"):
            if not self.ack_enabled:
                return 400, {}, _j({"text": "ACK is disabled", "code": 14})
            if not channel:
                return 400, {}, _j({"text": "Data channel is missing", "code": 10})
            ids = json.loads(req.body)["acks"]
            out = {}
            with self.lock:
                for i in ids:
                    if i not in self.acks[channel]:
                        out[str(i)] = False
                        continue
                    self.acks[channel][i] += 1
                    out[str(i)] = not self.never_ack and self.acks[channel][i] > self.ack_after_polls
            return 200, {}, _j({"acks": out})
        if req.path.rstrip("/") not in ("/services/collector/event", "/services/collector/event/1.0"):
            return 404, {}, _j({"text": "The requested URL was not found on this server.", "code": 404})
        if self.ack_enabled and not channel:
            return 400, {}, _j({"text": "Data channel is missing", "code": 10})
        text, dec, pos, n, events = req.body.decode("utf-8", "replace"), json.JSONDecoder(), 0, 0, []
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                ev, pos = dec.raw_decode(text, pos)
            except ValueError:
                return self._bad(events, "Invalid data format", 6, n)
            if not isinstance(ev, dict) or "event" not in ev:
                return self._bad(events, "Event field is required", 12, n)
            if ev["event"] in ("", None, {}):
                return self._bad(events, "Event field cannot be blank", 13, n)
            if ev.get("fields", {}).get("alert_id") in self.poison:
                return self._bad(events, "Invalid data format", 6, n)
            if self.indexes is not None and ev.get("index") not in self.indexes:
                return 400, {}, _j({"text": "Incorrect index", "code": 7, "invalid-event-number": n})
            events.append(ev)
            n += 1
        if not events:
            return 400, {}, _j({"text": "No data", "code": 5})
        with self.lock:
            self.events.extend(events)
            if self.ack_enabled:
                ack = self.next_ack[channel]
                self.next_ack[channel] += 1
                self.acks[channel][ack] = 0
                return 200, {}, _j({"text": "Success", "code": 0, "ackId": ack})
        return 200, {}, _j({"text": "Success", "code": 0})

    def _bad(self, before: list[dict], text: str, code: int, n: int):
        with self.lock:  # as Splunk does: the events before the bad one are indexed
            self.events.extend(before)
        return 400, {}, _j({"text": text, "code": code, "invalid-event-number": n})


class EsPeer(Peer):
    """Elasticsearch ``_bulk`` (index actions): documents stored by index and id, so a resend overwrites."""

    def __init__(self, *, api_key: str | None = None, basic: tuple[str, str] | None = None):
        super().__init__()
        self.api_key, self.basic = api_key, basic
        self.indices: dict[str, dict[str, dict]] = defaultdict(dict)
        self.writes: Counter = Counter()  # alert id → times indexed
        self.item_faults: dict[str, list[int]] = {}  # id → statuses answered (one per try) before success
        self.reject: dict[str, tuple[str, str]] = {}  # id → (error type, reason), 400 every time

    def copies(self, doc_id: str) -> int:
        with self.lock:
            return sum(doc_id in docs for docs in self.indices.values())

    def docs(self) -> dict[str, dict]:
        with self.lock:
            return {i: d for docs in self.indices.values() for i, d in docs.items()}

    def _authorized(self, req: Req) -> bool:
        auth = req.headers.get("authorization", "")
        if self.api_key:
            return auth == f"ApiKey {self.api_key}"
        if self.basic:
            return auth == "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
        return True

    def handle(self, req):
        if not self._authorized(req):
            return 401, {}, _j({"error": {"type": "security_exception", "reason": "unable to authenticate user"},
                                "status": 401})
        if req.method != "POST" or req.path.split("?")[0] != "/_bulk":
            return 404, {}, _j({"error": {"type": "no_handler"}, "status": 404})
        ctype = req.headers.get("content-type", "")
        if not ctype.startswith(("application/x-ndjson", "application/json")):
            return 406, {}, _j({"error": f"Content-Type header [{ctype}] is not supported", "status": 406})
        if not req.body.endswith(b"\n"):
            return 400, {}, _j({"error": {"type": "illegal_argument_exception",
                                          "reason": "The bulk request must be terminated by a newline [\\n]"},
                                "status": 400})
        lines = req.body.decode().splitlines()
        items, errors = [], False
        for action_line, doc_line in zip(lines[0::2], lines[1::2]):
            meta = json.loads(action_line)["index"]
            index, doc_id, doc = meta["_index"], meta["_id"], json.loads(doc_line)
            with self.lock:
                planned = self.item_faults.get(doc_id)
                status = planned.pop(0) if planned else None
                if status is None and doc_id in self.reject:
                    status = 400
                if status is not None:
                    errors = True
                    etype, reason = self.reject.get(doc_id, ("es_rejected_execution_exception", "rejected execution"))
                    if status == 429:
                        etype, reason = "es_rejected_execution_exception", "rejected execution of coordinating operation"
                    items.append({"index": {"_index": index, "_id": doc_id, "status": status,
                                            "error": {"type": etype, "reason": reason}}})
                    continue
                created = doc_id not in self.indices[index]
                self.indices[index][doc_id] = doc
                self.writes[doc_id] += 1
            items.append({"index": {"_index": index, "_id": doc_id, "_version": self.writes[doc_id],
                                    "result": "created" if created else "updated", "status": 201 if created else 200}})
        return 200, {}, _j({"took": 1, "errors": errors, "items": items})


class SlackPeer(Peer):
    """Slack incoming webhook: the secret path is the credential; text + blocks validated like Slack does."""

    def __init__(self, path: str = "/services/T0SOC/B0LAKE/s3cr3tPathToken0123456789"):
        super().__init__()
        self.path = path
        self.messages: list[dict] = []

    def handle(self, req):
        if req.path != self.path:
            return 404, {"Content-Type": "text/plain"}, b"no_service"
        try:
            doc = json.loads(req.body)
        except ValueError:
            return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
        blocks = doc.get("blocks", [])
        if not doc.get("text") or len(blocks) > 50:
            return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
        for b in blocks:
            if b["type"] == "header" and (b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150):
                return 400, {"Content-Type": "text/plain"}, b"invalid_blocks"
            if b["type"] == "section" and (len(b.get("fields", [])) > 10 or len(b.get("text", {}).get("text", "")) > 3000):
                return 400, {"Content-Type": "text/plain"}, b"invalid_blocks"
        with self.lock:
            self.messages.append(doc)
        return 200, {"Content-Type": "text/plain"}, b"ok"


class PagerDutyPeer(Peer):
    """PagerDuty Events API v2: routing key checked; one incident per dedup_key (a resend updates it)."""

    SEVERITIES = {"critical", "error", "warning", "info"}

    def __init__(self, routing_key: str):
        super().__init__()
        self.routing_key = routing_key
        self.incidents: dict[str, list[dict]] = {}  # dedup_key → events received for it

    def handle(self, req):
        if req.path != "/v2/enqueue":
            return 404, {}, _j({"status": "not found"})
        try:
            ev = json.loads(req.body)
        except ValueError:
            return 400, {}, _j({"status": "invalid event", "message": "Event object is invalid",
                                "errors": ["invalid JSON"]})
        errors = []
        if ev.get("routing_key") != self.routing_key:
            errors.append("Invalid routing key")
        if ev.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        p = ev.get("payload") or {}
        if not p.get("summary") or not p.get("source") or p.get("severity") not in self.SEVERITIES:
            errors.append("'payload' needs summary, source and a valid severity")
        if not ev.get("dedup_key") or len(ev["dedup_key"]) > 255:
            errors.append("'dedup_key' is invalid")
        if errors:
            return 400, {}, _j({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        with self.lock:
            self.incidents.setdefault(ev["dedup_key"], []).append(ev)
        return 202, {}, _j({"status": "success", "message": "Event processed", "dedup_key": ev["dedup_key"]})


class JsonPeer(Peer):
    """A generic receiver (Teams, SOAR): stores JSON bodies with their headers, answers ``status``."""

    def __init__(self, status: int = 200, reply: bytes = b"1"):
        super().__init__()
        self.status, self.reply = status, reply
        self.bodies: list = []

    def handle(self, req):
        with self.lock:
            self.bodies.append(json.loads(req.body))
        return self.status, {}, self.reply
