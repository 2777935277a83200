"""Shared plumbing for the HTTP sinks: one urllib3 pool per sink with timeouts, and one mapping of
failures to :class:`TransientSinkError` / :class:`PermanentSinkError`.

- no answer (refused, reset, timed out, TLS failure), 408, 429 and 5xx: transient, ``Retry-After``
  honoured (seconds or an HTTP date);
- any other 4xx (and a 3xx: redirects are not followed): permanent, with an excerpt of the body.

Messages name the endpoint by scheme, host and port only: never the path (a Slack or Teams webhook
URL is itself a credential), never a header value, and every configured secret is redacted from
response excerpts before they can reach a report, a log or the outbox's park reasons.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import urllib.parse
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import (
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from pipeline import __version__
from pipeline.forward.base import PermanentSinkError, SinkError, TransientSinkError
from pipeline.forward.secrets import SecretRef

USER_AGENT = f"soclake/{__version__}"
REDACTED = "[redacted]"
# urllib3 logs "POST /services/T000/B000/XXXX" at DEBUG: that path is a Slack/Teams credential.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


def resolve(value: str | SecretRef | None) -> str | None:
    """A plain option value, or a secret reference resolved now (at sink construction)."""
    return value.resolve() if isinstance(value, SecretRef) else value


def check_url(url: str, what: str = "url", error: type[Exception] = ValueError) -> str:
    """Validate an http(s) URL without ever echoing it (it may carry a secret path). Raises ``error``
    (ValueError inside pydantic validators, ConfigError for a URL read from a secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise error(f"{what} must be an http:// or https:// URL with a host")
    return url


def endpoint_label(url: str) -> str:
    """``scheme://host:port`` of ``url``: safe to print (no user info, path or query)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


@dataclass
class Response:
    status: int
    headers: Any  # urllib3 HTTPHeaderDict (case-insensitive)
    data: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return None


class HttpClient:
    """One connection pool to one endpoint. ``secrets`` are redacted from every message it builds."""

    def __init__(self, url: str, *, timeout: float, verify_tls: bool = True, ca_file: str | None = None,
                 secrets: Iterable[str | None] = ()):
        self.label = endpoint_label(url)
        self.timeout = timeout
        self.verify_tls = verify_tls
        # Longest first, so a secret containing another is redacted whole. Tiny values would mangle text.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        kwargs: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify_tls else "CERT_NONE"}
        if ca_file:
            kwargs["ca_certs"] = ca_file
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=2, timeout=urllib3.Timeout(total=timeout),
                                        retries=False, headers={"User-Agent": USER_AGENT}, **kwargs)

    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 6 and value not in self.secrets:
            self.secrets = sorted([*self.secrets, value], key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, REDACTED)
        return text

    def excerpt(self, data: bytes | str, limit: int = 300) -> str:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        text = self.redact(" ".join(text.split()))
        return text if len(text) <= limit else text[:limit] + "…"

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """Send one request; a failure to get an answer is a :class:`TransientSinkError`."""
        try:
            with warnings.catch_warnings():
                if not self.verify_tls:
                    warnings.simplefilter("ignore", InsecureRequestWarning)
                r = self.pool.request(method, url, body=body, headers=headers, redirect=False, retries=False,
                                      preload_content=True)
            return Response(r.status, r.headers, r.data or b"")
        except NewConnectionError as e:  # before TimeoutError: urllib3 2 makes it a ConnectTimeoutError
            raise TransientSinkError(f"{self.label}: cannot connect ({self._cause(e)})") from None
        except Urllib3Timeout:
            raise TransientSinkError(f"{self.label}: no response within {self.timeout:g}s") from None
        except SSLError as e:
            # Left pending rather than parked: a certificate problem is fixed on our side, then resent.
            raise TransientSinkError(f"{self.label}: TLS error ({self._cause(e)})") from None
        except (ProtocolError, HTTPError, OSError) as e:
            raise TransientSinkError(f"{self.label}: connection failed ({self._cause(e)})") from None

    def _cause(self, e: BaseException) -> str:
        """The root cause's class and errno text, never its repr (which may hold the URL)."""
        seen = e
        while seen.__context__ is not None and seen.__context__ is not seen:
            seen = seen.__context__
        for err in (seen, e):
            if isinstance(err, ConnectionRefusedError):
                return "connection refused"
            if isinstance(err, OSError) and err.strerror:
                return self.redact(err.strerror)
        return type(seen).__name__

    def failure(self, resp: Response, detail: str | None = None) -> SinkError:
        """The error for a non-2xx answer (returned, not raised): transient or permanent."""
        reason = detail if detail is not None else self.excerpt(resp.data)
        msg = f"{self.label}: HTTP {resp.status}" + (f": {self.redact(reason)}" if reason else "")
        if is_transient_status(resp.status):
            return TransientSinkError(msg, retry_after=resp.retry_after)
        if resp.status in (401, 403):
            # The credentials are wrong, not the alerts: keep them pending until the token is fixed.
            return TransientSinkError(msg + " (check the sink's token or credentials)")
        if 300 <= resp.status < 400:
            return PermanentSinkError(msg + " (redirects are not followed: configure the final URL)")
        return PermanentSinkError(msg)

    def check(self, resp: Response, detail: str | None = None) -> Response:
        """Return a 2xx response; raise the mapped error otherwise."""
        if resp.ok:
            return resp
        raise self.failure(resp, detail)

    def close(self) -> None:
        self.pool.clear()
