"""Syslog sink: RFC 5424 (RFC 3164 on request) over UDP, TCP or TLS; the message is the soclake
alert JSON or an ArcSight CEF line.

```yaml
- name: siem
  type: syslog
  host: syslog.example.com
  protocol: tls            # udp | tcp | tls (default tcp); port defaults to 514, or 6514 for tls
  framing: octet-counting  # tcp/tls: RFC 6587 "LEN SP MSG" (default) or lf
  format: cef              # json (default) | cef
  ca_file: /etc/ssl/siem-ca.pem
```

A message (RFC 5424)::

    <PRI>1 TIMESTAMP HOSTNAME soclake - MSGID [soclake@32473 alertId=".." ruleId=".." severity=".."] MSG

PRI is ``facility * 8 + severity`` (critical→2 crit, high→3 err, medium→4 warning, low→5 notice,
info→6 info); TIMESTAMP is the alert version's ``detected_at`` (RFC 3339, microseconds, Z), so a
re-sent alert carries the same timestamp; MSGID is the rule id (cut to the 32 characters RFC 5424
allows; ``ruleId`` in the structured data is always whole).

Delivery:

* UDP cannot confirm receipt: a datagram handed to the kernel counts as delivered. The only
  failure seen is a local one, e.g. an ICMP "port unreachable" reported on the connected socket
  (then the whole batch is retried). Use TCP or TLS when alerts must not be lost.
* TCP/TLS: one connection per batch. After writing the batch the sink closes its sending side
  (TLS: close_notify) and waits, up to ``retry.timeout``, for the receiver to close its own: a
  receiver reads to the end of the stream before it closes, so a clean close confirms the whole
  batch was read. Refused, reset or timed out → TransientSinkError for the whole batch, which
  is sent again: at-least-once, the receiver may see an alert twice (deduplicate on alertId).
* Message size: ``max_message_size`` (default 2048 bytes for UDP, 65536 for TCP/TLS; the
  receiver must accept it, e.g. rsyslog ``global(maxMessageSize="64k")``). A longer message is
  cut at a UTF-8 character boundary (never inside a CEF escape), ends with ``...[truncated]``
  and gets ``truncated="<original MSG bytes>"`` in its structured data; with
  ``oversize: reject`` it is rejected instead (parked with the reason).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
from typing import Literal

from pydantic import Field, model_validator

from pipeline import __version__
from pipeline.errors import ConfigError
from pipeline.forward.base import SendResult, SinkConfig, TransientSinkError
from pipeline.forward.render import to_json
from pipeline.forward.secrets import SecretRef

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}  # syslog severity codes
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
SD_ID = "soclake@32473"
MARKER = b"...[truncated]"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _printable(s: str) -> bool:
    return bool(s) and all(33 <= ord(c) <= 126 for c in s)


class SyslogConfig(SinkConfig):
    type: Literal["syslog"]
    host: str
    port: int | None = Field(None, ge=1, le=65535, description="default 514 (udp/tcp) or 6514 (tls)")
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    framing: Literal["octet-counting", "lf"] = "octet-counting"
    rfc: Literal[5424, 3164] = 5424
    format: Literal["json", "cef"] = "json"
    facility: str | int = "local4"
    app_name: str = "soclake"
    hostname: str | None = Field(None, description="default: this machine's hostname")
    max_message_size: int | None = Field(None, ge=480, le=1 << 20, description="bytes; default 2048 udp, 65536 tcp/tls")
    oversize: Literal["truncate", "reject"] = "truncate"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretRef | None = None
    verify: bool = True
    server_hostname: str | None = Field(None, description="name checked in the server certificate (default: host)")

    @model_validator(mode="after")
    def _check(self):
        if self.facility_code is None:
            raise ValueError(f"facility must be 0-23 or one of {', '.join(FACILITIES)}")
        if not _printable(self.app_name) or len(self.app_name) > 48:
            raise ValueError("app_name must be 1-48 printable ASCII characters without spaces")
        if self.hostname is not None and (not _printable(self.hostname) or len(self.hostname) > 255):
            raise ValueError("hostname must be 1-255 printable ASCII characters without spaces")
        if self.protocol == "udp" and "framing" in self.model_fields_set:
            raise ValueError("framing applies to tcp and tls only")
        tls_opts = [k for k in ("ca_file", "cert_file", "key_file", "key_password", "server_hostname")
                    if getattr(self, k) is not None] + (["verify"] if "verify" in self.model_fields_set else [])
        if self.protocol != "tls" and tls_opts:
            raise ValueError(f"{', '.join(tls_opts)}: only with protocol: tls")
        if (self.key_file or self.key_password) and not self.cert_file:
            raise ValueError("key_file/key_password need cert_file (the client certificate)")
        return self

    @property
    def facility_code(self) -> int | None:
        f = self.facility
        if isinstance(f, str) and f.isdigit():
            f = int(f)
        if isinstance(f, int):
            return f if 0 <= f <= 23 else None
        return FACILITIES.get(f.lower())


# --- rendering -------------------------------------------------------------------------------------

def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sd_escape(value: str) -> str:
    """RFC 5424 PARAM-VALUE: backslash before '"', '\\' and ']'."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _token(s: str, limit: int) -> str:
    """A header field (APP-NAME, MSGID, HOSTNAME): printable ASCII, no spaces, at most ``limit``."""
    return "".join(c if 33 <= ord(c) <= 126 else "_" for c in s)[:limit] or "-"


def cef_header(value) -> str:
    """CEF header field: escape backslash and pipe; a header holds no line breaks."""
    s = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return s.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def cef_value(value) -> str:
    """CEF extension value: escape backslash and '=', encode line breaks as \\n and \\r."""
    s = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return s.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def _ms(t: dt.datetime) -> int:
    return int(_utc(t).timestamp() * 1000)


def to_cef(alert, hostname: str | None = None) -> str:
    """ArcSight CEF:0 line for an alert."""
    pairs: list[str] = []

    def add(key: str, value, label: str | None = None) -> None:
        if value in (None, ""):
            return  # an empty field (and its label) is left out
        if label:
            pairs.append(f"{key}Label={cef_value(label)}")
        pairs.append(f"{key}={cef_value(value)}")

    add("rt", _ms(alert.detected_at))
    add("start", _ms(alert.first_seen))
    add("end", _ms(alert.last_seen))
    add("cnt", alert.event_count)
    add("suser", alert.actor)
    ip = alert.source_ips[0] if alert.source_ips else None
    add("c6a2" if ip and ":" in ip else "src", ip)  # CEF src holds IPv4 only; c6a2 is the source IPv6
    add("cs1", alert.account_id, "account")
    add("cs2", alert.region, "region")
    add("cs3", ",".join(alert.attack.techniques), "techniques")
    add("cs4", alert.practice, "practice")
    add("cs5", ",".join(alert.resources), "resources")
    add("cn1", alert.rule_version, "ruleVersion")
    add("externalId", alert.id)
    add("act", "alert")
    add("cat", ",".join(alert.attack.tactics))
    add("dvchost", hostname)
    add("msg", alert.runbook)  # last: a message cut to fit max_message_size loses free text only
    head = ["CEF:0", "soclake", "soclake", __version__, alert.rule_id, alert.title, CEF_SEVERITY[alert.severity]]
    return "|".join([head[0]] + [cef_header(h) for h in head[1:]]) + "|" + " ".join(pairs)


class Oversize(Exception):
    pass


def _cut(msg: bytes, room: int) -> bytes:
    """At most ``room`` bytes of ``msg``: whole UTF-8 characters, never a dangling escape backslash."""
    s = msg[:max(room, 0)].decode("utf-8", "ignore")
    trailing = len(s) - len(s.rstrip("\\"))
    if trailing % 2:
        s = s[:-1]
    return s.encode()


class SyslogSink:
    max_batch = 500

    def __init__(self, cfg: SyslogConfig, secrets_client=None):
        self.name, self.cfg = cfg.name, cfg
        self.port = cfg.port or (6514 if cfg.protocol == "tls" else 514)
        self.limit = cfg.max_message_size or (2048 if cfg.protocol == "udp" else 65536)
        self.hostname = _token(cfg.hostname or socket.gethostname(), 255)
        self.pri_base = cfg.facility_code * 8
        self._ctx = self._tls_context(secrets_client) if cfg.protocol == "tls" else None

    # -- rendering --
    def body(self, alert) -> bytes:
        if self.cfg.format == "cef":
            return to_cef(alert, self.hostname).encode()
        return json.dumps(to_json(alert), separators=(",", ":"), ensure_ascii=False).encode()

    def _header(self, alert, truncated_from: int | None) -> bytes:
        pri = self.pri_base + SEVERITY[alert.severity]
        if self.cfg.rfc == 3164:
            t = _utc(alert.detected_at)
            stamp = f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"
            return f"<{pri}>{stamp} {self.hostname} {self.cfg.app_name}: ".encode()
        params = [("alertId", alert.id), ("ruleId", alert.rule_id), ("severity", alert.severity)]
        if truncated_from is not None:
            params.append(("truncated", str(truncated_from)))
        sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v)}"' for k, v in params) + "]"
        return (f"<{pri}>1 {rfc3339(alert.detected_at)} {self.hostname} {self.cfg.app_name} - "
                f"{_token(alert.rule_id, 32)} {sd} ").encode()

    def render(self, alert) -> bytes:
        """The syslog message (without transport framing); raises Oversize when it cannot fit."""
        msg = self.body(alert)
        head = self._header(alert, None)
        if len(head) + len(msg) <= self.limit:
            return head + msg
        size = len(head) + len(msg)
        if self.cfg.oversize == "reject":
            raise Oversize(f"syslog message of {size} bytes exceeds max_message_size {self.limit} "
                           f"({self.cfg.protocol}); raise it or use tcp/tls")
        head = self._header(alert, len(msg))
        room = self.limit - len(head) - len(MARKER)
        if room < 64:
            raise Oversize(f"syslog header leaves no room for the message within {self.limit} bytes")
        return head + _cut(msg, room) + MARKER

    def frame(self, message: bytes) -> bytes:
        if self.cfg.protocol == "udp":
            return message
        if self.cfg.framing == "lf":
            return message + b"\n"  # JSON and CEF rendering never leave a raw line break in a message
        return b"%d %s" % (len(message), message)

    # -- transport --
    def _tls_context(self, secrets_client) -> ssl.SSLContext:
        c = self.cfg
        try:
            ctx = ssl.create_default_context(cafile=c.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not c.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if c.cert_file:
                password = c.key_password.resolve(secrets_client) if c.key_password else None
                ctx.load_cert_chain(c.cert_file, c.key_file, password=password)
        except ConfigError:
            raise
        except (OSError, ssl.SSLError) as e:  # never echo a password: name the files and the error kind only
            raise ConfigError(f"sink {c.name}: cannot load TLS files (ca_file={c.ca_file}, cert_file={c.cert_file}, "
                              f"key_file={c.key_file}): {type(e).__name__}: {getattr(e, 'strerror', None) or e.args[-1]}"
                              ) from None
        return ctx

    def _where(self) -> str:
        return f"syslog {self.cfg.protocol}://{self.cfg.host}:{self.port}"

    def _fail(self, what: str, e: BaseException) -> TransientSinkError:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = f"certificate verify failed: {e.verify_message}"
        elif isinstance(e, TimeoutError):
            detail = f"timed out after {self.cfg.retry.timeout}s"
        else:
            detail = f"{type(e).__name__}: {e.strerror or e}" if isinstance(e, OSError) else str(e)
        return TransientSinkError(f"{self._where()}: {what}: {detail}")

    def send(self, alerts) -> SendResult:
        frames, rejected = [], {}
        for a in alerts:
            try:
                frames.append(self.frame(self.render(a)))
            except Oversize as e:
                rejected[a.id] = str(e)
        if frames:
            if self.cfg.protocol == "udp":
                self._send_udp(frames)
            else:
                self._send_stream(b"".join(frames))
        return SendResult(delivered=[a.id for a in alerts if a.id not in rejected], rejected=rejected)

    def _send_udp(self, datagrams: list[bytes]) -> None:
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.cfg.host, self.port, type=socket.SOCK_DGRAM)[0]
        except OSError as e:
            raise self._fail("cannot resolve host", e) from None
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(self.cfg.retry.timeout)
                sock.connect(addr)  # connected: an ICMP port unreachable is reported to us
                for d in datagrams:
                    sock.send(d)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
        except OSError as e:
            raise self._fail("send failed", e) from None

    def _send_stream(self, data: bytes) -> None:
        timeout = self.cfg.retry.timeout
        try:
            sock = socket.create_connection((self.cfg.host, self.port), timeout=timeout)
        except OSError as e:
            raise self._fail("cannot connect", e) from None
        try:
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(sock, server_hostname=self.cfg.server_hostname or self.cfg.host)
            sock.sendall(data)
            self._finish(sock)
        except (OSError, ssl.SSLError) as e:
            raise self._fail("batch not confirmed", e) from None
        finally:
            sock.close()

    @staticmethod
    def _finish(sock: socket.socket) -> None:
        """Close our side and wait for the receiver to close its own (it has then read everything)."""
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock = sock.unwrap()  # close_notify, and the receiver's in answer
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return  # the receiver closed the connection after reading our close_notify
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass  # a syslog receiver sends nothing; drain until its end of stream

    def close(self) -> None:
        pass


SINK_TYPES = {"syslog": (SyslogConfig, SyslogSink)}
