"""`evbus sub add|list|show|rm|test|pause|resume`: subscriptions on the compacted topic."""

from __future__ import annotations

import sys

import click

from ..envelope.model import new_event
from ..matching import patterns
from ..matching.index import SubscriptionIndex, describe
from ..subscriptions import Subscription, SubscriptionStore
from ..subscriptions.store import entry_for
from .common import bootstrap_option, emit, handle_errors, json_option, settings
from .publish_cmd import parse_data


def _line(s: Subscription) -> str:
    state = ("" if s.enabled else "  (disabled)") + ("  (paused)" if s.paused else "")
    where = f"  where {s.filter}" if s.filter else ""
    return f"{s.tenant}/{s.name} → {s.workflow}  on {', '.join(s.patterns)}{where}{state}"


def _with_matching(s: Subscription) -> tuple[dict, str]:
    """The subscription as JSON with how the router matches it (index.describe), and the text lines."""
    how = describe(entry_for(s))
    return {**s.to_json(), "matching": how}, f"{_line(s)}\n  matching: {how['text']}"


@click.group()
def sub() -> None:
    """Add, list, show, remove and test subscriptions."""


@sub.command()
@click.argument("name")
@click.option("--tenant", required=True)
@click.option("--workflow", required=True, help="The workflow to trigger (its topic is triggers.<workflow>).")
@click.option("--on", "on", multiple=True, required=True, help="Topic pattern; repeat for several.")
@click.option("--where", "where", help='CEL filter, e.g. \'event.department == "Finance"\'.')
@click.option("--disabled", is_flag=True, help="Store it disabled.")
@click.option("--paused", is_flag=True, help="Store it paused: triggers are kept until `evbus sub resume`.")
@click.option("--max-attempts", type=int, help="Handler calls per trigger before the dead letters [5].")
@click.option("--max-age", "max_age_s", type=int, help="Seconds after routing a failing trigger is retried [86400].")
@click.option("--recursion", type=int,
              help="Times its own descendants may trigger it again in one causation chain [0: a cycle is a loop].")
@bootstrap_option
@json_option
@handle_errors
def add(name, tenant, workflow, on, where, disabled, paused, max_attempts, max_age_s, recursion, bootstrap,
        as_json) -> None:
    """Add or replace subscription NAME; it is live in the router within a second."""
    s = SubscriptionStore(settings(bootstrap)).put(name=name, tenant=tenant, workflow=workflow,
                                                    patterns=list(on), filter=where, enabled=not disabled,
                                                    paused=paused, max_attempts=max_attempts, max_age_s=max_age_s,
                                                    recursion=recursion)
    data, text = _with_matching(s)
    emit(data, as_json, f"stored {text}")


@sub.command("list")
@click.option("--tenant", help="Only this tenant's subscriptions.")
@bootstrap_option
@json_option
@handle_errors
def list_(tenant, bootstrap, as_json) -> None:
    """List subscriptions."""
    subs = SubscriptionStore(settings(bootstrap)).list(tenant)
    emit([s.to_json() for s in subs], as_json, "\n".join(_line(s) for s in subs) or "no subscriptions")


@sub.command()
@click.argument("name")
@click.option("--tenant", required=True)
@bootstrap_option
@json_option
@handle_errors
def show(name, tenant, bootstrap, as_json) -> None:
    """Show one subscription."""
    s = SubscriptionStore(settings(bootstrap)).get(tenant, name)
    if s is None:
        click.echo(f"error: no subscription {tenant}/{name}", err=True)
        sys.exit(1)
    data, text = _with_matching(s)
    emit(data, as_json, text)


@sub.command()
@click.argument("name")
@click.option("--tenant", required=True)
@bootstrap_option
@handle_errors
def rm(name, tenant, bootstrap) -> None:
    """Remove a subscription (a tombstone on the compacted topic)."""
    if not SubscriptionStore(settings(bootstrap)).delete(tenant, name):
        click.echo(f"error: no subscription {tenant}/{name}", err=True)
        sys.exit(1)
    click.echo(f"removed {tenant}/{name}")


@sub.command()
@click.argument("name")
@click.option("--tenant", required=True)
@bootstrap_option
@handle_errors
def pause(name, tenant, bootstrap) -> None:
    """Pause: triggers are still routed and kept; the runner holds them until resumed."""
    s = SubscriptionStore(settings(bootstrap)).set_paused(tenant, name, True)
    click.echo(f"paused {s.key}: its triggers accumulate until `evbus sub resume {s.name} --tenant {s.tenant}`")


@sub.command()
@click.argument("name")
@click.option("--tenant", required=True)
@bootstrap_option
@handle_errors
def resume(name, tenant, bootstrap) -> None:
    """Resume a paused subscription: held triggers are delivered, in order."""
    s = SubscriptionStore(settings(bootstrap)).set_paused(tenant, name, False)
    click.echo(f"resumed {s.key}")


@sub.command()
@click.option("--tenant", required=True)
@click.option("--type", "type_", required=True, help="Event type, e.g. user.provisioned.")
@click.option("--data", help="JSON payload or @file.")
@bootstrap_option
@json_option
@handle_errors
def test(tenant, type_, data, bootstrap, as_json) -> None:
    """Print the subscriptions this event would trigger, and why the tenant's others would not."""
    cfg = settings(bootstrap)
    event = new_event(type_, parse_data(data), tenant=tenant, source="evbus/sub-test", max_bytes=cfg.max_event_bytes)
    subs = [s for s in SubscriptionStore(cfg).list(tenant)]
    index = SubscriptionIndex(entry_for(s) for s in subs if s.enabled)
    result = index.match(event.tenant, event.type, event.payload, event.meta)
    matched = {e.key for e in result.matched}
    errors = {e.key: err for e, err in result.errors}
    rows = [_explain(s, event.type, matched, errors) for s in subs]
    hits = [r for r in rows if r["matched"]]
    text = "\n".join(f"{r['subscription']} → {r['workflow']}" for r in hits) or "no subscription matches"
    if not as_json and len(rows) > len(hits):
        text += "\n\nnot triggered:\n" + "\n".join(f"  {r['subscription']}: {r['reason']}" for r in rows if not r["matched"])
    emit({"matched": hits, "not_matched": [r for r in rows if not r["matched"]]}, as_json, text)


def _explain(s: Subscription, event_type: str, matched: set, errors: dict) -> dict:
    if s.key in matched:
        reason = "matched"
    elif not s.enabled:
        reason = "disabled"
    elif not any(patterns.matches(p, event_type) for p in s.patterns):
        reason = f"no pattern matches {event_type}"
    elif s.key in errors:
        reason = f"filter error (counted as no match): {errors[s.key]}"
    else:
        reason = "filter is false"
    return {"subscription": s.key, "workflow": s.workflow, "matched": s.key in matched, "reason": reason}
