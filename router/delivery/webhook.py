"""Webhook workflows: each trigger is POSTed to a URL (a workflow engine's webhook), with the runner's
guarantees: key order, concurrency, retries, dead letters.

The body is JSON: the event (CloudEvents attributes and `data`), the subscription, tenant, workflow,
idempotency key and attempt. Headers:
  Evbus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the shared secret>
  Evbus-Idempotency-Key, Evbus-Event-Id, Evbus-Attempt; Evbus-Hops and Evbus-Chain (the causation chain,
  to pass back when the workflow publishes).
The receiver checks the signature and rejects a timestamp older than a few minutes (replay).

Answers: 2xx done; 429 and 5xx retried (429 honours Retry-After); 408 and timeouts and connection errors
retried; any other 4xx is permanent (the request itself is wrong): dead-lettered at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime

import httpx
import orjson

from ..errors import ConfigError
from .policy import PermanentError, RetryLater

SIGNATURE_HEADER = "Evbus-Signature"


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, tolerance_s: float = 300) -> bool:
    """What a receiver does (and the tests): the MAC matches and the timestamp is recent."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


class WebhookHandler:
    """A handler (sync, thread-safe: one pooled client) that delivers a trigger by HTTP POST."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0, concurrency: int = 16) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL {url!r} must start with http:// or https://")
        if not secret:
            raise ConfigError("a webhook needs a signing secret: set EVBUS_WEBHOOK_SECRET (or --secret-env NAME)")
        self.url = url
        self._secret = secret.encode()
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=concurrency),
                                    follow_redirects=False)
        self.__name__ = f"webhook {url}"

    def close(self) -> None:
        self._client.close()

    def body(self, trigger, attempt: int) -> bytes:
        return orjson.dumps({"event": trigger.event.to_dict(), "subscription": trigger.subscription,
                             "tenant": trigger.tenant, "workflow": trigger.workflow,
                             "idempotency_key": trigger.idempotency_key,
                             "routed_at": trigger.routed_at.isoformat(), "attempt": attempt})

    def __call__(self, trigger) -> None:
        attempt = trigger.attempt
        body = self.body(trigger, attempt)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, body),
                   "Evbus-Idempotency-Key": trigger.idempotency_key, "Evbus-Event-Id": trigger.event.id,
                   "Evbus-Attempt": str(attempt), "Evbus-Hops": str(trigger.lineage.hops),
                   "Evbus-Chain": ",".join(trigger.lineage.chain)}
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryLater(f"{self.url} timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RetryLater(f"{self.url} unreachable: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text[:300].strip()
        if status == 429:
            raise RetryLater(f"{self.url} answered 429 Too Many Requests", _retry_after(response))
        if status >= 500 or status == 408:
            raise RetryLater(f"{self.url} answered {status}: {text}")
        raise PermanentError(f"{self.url} answered {status}: {text}")


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    if value.isdigit():
        return min(float(value), 3600.0)
    try:
        return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), 3600.0))
    except (TypeError, ValueError):
        return 0.0
