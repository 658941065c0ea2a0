"""The causation chain every event carries, and the loop protection built on it.

An event published while a workflow handles a trigger descends from the trigger's event: it shares its
correlation id, its causation id is that event's id, its hop count is one more, and its chain is the
trigger's chain plus the subscription that triggered the workflow. Hops and chain travel as Kafka headers
(`evbus-hops`, `evbus-chain`), so the router reads them without decoding the payload; correlation and
causation ids are CloudEvents attributes of the envelope. Events from outside the bus start at hop 0.

The router refuses an event at the hop limit (default 16) and a trigger whose subscription already
appears in the chain more often than it allows (`recursion`, default 0): both go to the dead letters with
reason `loop`. The runner sets `current` while a handler runs; the client reads it to fill the chain in.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

HOPS_HEADER = "evbus-hops"
CHAIN_HEADER = "evbus-chain"
HEADERS = (HOPS_HEADER, CHAIN_HEADER)  # what from_headers() reads
HOP_LIMIT = 16
MAX_CHAIN = 64  # entries kept in the header; the hop limit stops a chain long before this


class LineageError(ValueError):
    """The lineage headers of a record are not what the bus writes."""


@dataclass(frozen=True, slots=True)
class Lineage:
    hops: int = 0
    chain: tuple[str, ...] = ()  # subscription keys (tenant/name) that triggered the ancestors, oldest first
    correlationid: str | None = None
    causationid: str | None = None

    def child(self, subscription_key: str, event_id: str, correlationid: str | None) -> "Lineage":
        """The lineage of an event published by a handler of a trigger of (`event_id`, `subscription_key`)."""
        return Lineage(self.hops + 1, (*self.chain, subscription_key)[-MAX_CHAIN:],
                       correlationid or event_id, event_id)

    def headers(self) -> list[tuple[str, bytes]]:
        if not self.hops and not self.chain:
            return []
        return [(HOPS_HEADER, str(self.hops).encode()), (CHAIN_HEADER, ",".join(self.chain).encode())]

    def times_in_chain(self, subscription_key: str) -> int:
        return self.chain.count(subscription_key)


ROOT = Lineage()


def from_headers(headers) -> Lineage:
    """Hops and chain from a record's headers (bytes values); a root lineage when there are none."""
    hops_raw = chain_raw = None
    for name, value in headers or ():
        if name == HOPS_HEADER:
            hops_raw = value
        elif name == CHAIN_HEADER:
            chain_raw = value
    if hops_raw is None and chain_raw is None:
        return ROOT
    try:
        hops = int(hops_raw or b"0")
        chain = tuple(filter(None, (chain_raw or b"").decode().split(",")))
    except (ValueError, UnicodeDecodeError):
        raise LineageError(f"{HOPS_HEADER}={hops_raw!r} {CHAIN_HEADER}={chain_raw!r} are not a hop count "
                           "and a comma-separated list of subscriptions") from None
    if hops < 0:
        raise LineageError(f"{HOPS_HEADER}={hops} is negative")
    return Lineage(hops, chain)


# The trigger a handler is working on, set by the runner around each call: the client publishes the
# handler's events as that trigger's descendants.
current: ContextVar[Lineage | None] = ContextVar("evbus_lineage", default=None)
