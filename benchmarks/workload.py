"""A realistic, reproducible mix of subscriptions and events for an MSP automation platform.

Tenants have 1-300 subscriptions (a few large tenants, many small: a Pareto spread). Patterns are mostly
exact types, some `domain.*`, `*.failed` and `domain.**`. Filters: none, equality, `in` lists, numeric
ranges, string functions, and a share the index cannot capture (regular expressions, size()). Events are
drawn per tenant in proportion to its subscriptions, shaped like what its subscriptions ask for, so an
event triggers about 1-5 workflows on average at every size.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

_DOMAINS = ["user", "ticket", "job", "backup", "device", "invoice", "alert", "patch", "license", "mailbox",
            "group", "site", "contract", "asset", "firewall", "vpn", "printer", "scan", "policy", "report",
            "domain", "certificate", "storage", "network"]
_ACTIONS = ["created", "updated", "deleted", "failed", "succeeded", "opened", "closed", "raised", "cleared",
            "expired", "renewed", "assigned"]
TYPES = [f"{d}.{a}" for i, d in enumerate(_DOMAINS) for j, a in enumerate(_ACTIONS) if (i + j) % 4 != 0]
TYPES += [f"device.alert.{x}" for x in ("raised", "cleared")]
DEPARTMENTS = ["Finance", "HR", "Engineering", "Sales", "Legal", "Support", "Ops", "Marketing"]
SEVERITIES = ["critical", "major", "minor", "info"]
SITES = [f"site-{i}" for i in range(20)]


@dataclass(frozen=True)
class Sub:
    name: str
    tenant: str
    workflow: str
    patterns: tuple[str, ...]
    filter: str | None
    hint: tuple = ()  # payload fields that make the filter true


def _filter(rng: random.Random) -> tuple[str | None, tuple]:
    r = rng.random()
    dept, sev, site = rng.choice(DEPARTMENTS), rng.choice(SEVERITIES[1:]), rng.choice(SITES)
    if r < 0.20:
        return None, ()
    if r < 0.45:
        return f'event.department == "{dept}"', (("department", dept),)
    if r < 0.60:
        return f'event.severity in ["critical", "{sev}"]', (("severity", sev),)
    if r < 0.72:
        prio = rng.randint(2, 4)
        return f'event.priority >= {prio} && event.site == "{site}"', (("priority", prio), ("site", site))
    if r < 0.82:
        letter = rng.choice("ABCDEFGH")
        return f'event.customer.startsWith("{letter}") && has(event.owner)', (("customer", letter + "corp"),
                                                                             ("owner", "tech1"))
    if r < 0.91:
        return (f'event.department == "{dept}" && event.hostname.matches("^srv-[0-9]+$")',
                (("department", dept), ("hostname", "srv-42")))
    top = rng.randint(3, 6)
    return f'size(event.tags) > {rng.randint(0, 2)} && event.priority < {top}', (("tags", ["vip", "eu", "us"]),
                                                                                 ("priority", 1))


def _patterns(rng: random.Random) -> tuple[str, ...]:
    r = rng.random()
    t = rng.choice(TYPES)
    domain = t.split(".")[0]
    if r < 0.65:
        return (t,)
    if r < 0.80:
        return (f"{domain}.*",)
    if r < 0.90:
        return (f"*.{rng.choice(['failed', 'opened', 'raised'])}",)
    return (f"{domain}.**",)


def subscriptions(n: int, seed: int = 7, workflows: int = 200, tenants: int = 1000) -> list[Sub]:
    """n subscriptions over `tenants` tenants of Pareto-spread sizes (1 to 300 each)."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.2) for _ in range(tenants)]
    total = sum(weights)
    sizes = [max(1, min(300, round(n * w / total))) for w in weights]
    while sum(sizes) < n:  # the cap leaves some over: give it to tenants with room
        t = rng.randrange(tenants)
        if sizes[t] < 300:
            sizes[t] += 1
    subs: list[Sub] = []
    for t, count in enumerate(sizes):
        for i in range(count):
            where, hint = _filter(rng)
            subs.append(Sub(f"s{i}", f"tenant-{t}", f"wf-{rng.randrange(workflows)}", _patterns(rng), where, hint))
    rng.shuffle(subs)
    return subs[:n]


def _type_for(pattern: str, rng: random.Random) -> str:
    candidates = _fitting(pattern)
    return rng.choice(candidates) if candidates else rng.choice(TYPES)


@functools.lru_cache(maxsize=None)
def _fitting(pattern: str) -> list[str]:
    return [t for t in TYPES if _fits(pattern, t)]


def _fits(pattern: str, t: str) -> bool:
    from router.matching.patterns import matches
    return matches(pattern, t)


def events(subs: list[Sub], count: int, seed: int = 11) -> list[tuple[str, str, dict]]:
    """(tenant, type, payload): a tenant in proportion to its subscriptions, a type one of them listens to."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        sub = rng.choice(subs)
        payload = {
            "department": rng.choice(DEPARTMENTS), "severity": rng.choice(SEVERITIES), "priority": rng.randint(1, 5),
            "site": rng.choice(SITES), "customer": rng.choice("ABCDEFGHIJKLMNOP") + "corp",
            "hostname": f"srv-{rng.randint(1, 999)}" if rng.random() < 0.5 else f"ws-{rng.randint(1, 999)}",
            "tags": rng.sample(["vip", "new", "remote", "eu", "us"], rng.randint(0, 3)),
            "user": {"name": f"user{rng.randint(1, 10_000)}", "email": f"u{rng.randint(1, 10_000)}@example.com"},
        }
        if rng.random() < 0.5:
            payload["owner"] = f"tech{rng.randint(1, 50)}"
        if rng.random() < 0.85:  # most events are what some subscription asks for
            payload.update(sub.hint)
        out.append((sub.tenant, _type_for(rng.choice(sub.patterns), rng), payload))
    return out
