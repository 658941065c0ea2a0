"""`evbus dlq list|show|redrive --workflow W`: a workflow's dead letters, with their context."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from ..delivery import deadletters
from ..errors import ConfigError
from .common import bootstrap_option, emit, handle_errors, json_option, settings

workflow_option = click.option("--workflow", required=True, help="The workflow whose dead letters to read.")


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-27T10:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def filters(fn):
    for option in reversed([
            click.option("--subscription", help="Only dead letters of this subscription."),
            click.option("--error", help="Only those whose error type or message contains this text."),
            click.option("--since", help="Only those that last failed at or after this ISO time."),
            click.option("--until", help="Only those that last failed at or before this ISO time.")]):
        fn = option(fn)
    return fn


def _select(cfg, workflow, subscription, error, since, until, include_redriven):
    letters = deadletters.read(cfg, workflow)
    return deadletters.select(letters, subscription=subscription, error=error, since=_when(since),
                              until=_when(until), include_redriven=include_redriven)


@click.group()
def dlq() -> None:
    """A workflow's dead letters: list, show, redrive."""


@dlq.command("list")
@workflow_option
@filters
@click.option("--all", "include_redriven", is_flag=True, help="Include those already redriven.")
@bootstrap_option
@json_option
@handle_errors
def list_(workflow, subscription, error, since, until, include_redriven, bootstrap, as_json) -> None:
    """List dead letters (not yet redriven, unless --all)."""
    letters = _select(settings(bootstrap), workflow, subscription, error, since, until, include_redriven)
    rows = [letter.summary() for letter in letters]
    text = "\n".join(f"{r['id']:>8}  {r['last_failure'] or '':32}  {r['subscription']:20}  {r['reason']:18}  "
                     f"{r['attempts'] or '-':>3}×  {r['error_type']}: {r['error'][:80]}"
                     + ("  (redriven)" if r["redriven"] else "") for r in rows)
    emit(rows, as_json, text or f"no dead letters for {workflow}")


@dlq.command()
@workflow_option
@click.argument("id_")
@bootstrap_option
@json_option
@handle_errors
def show(workflow, id_, bootstrap, as_json) -> None:
    """Show dead letter ID (partition:offset, from `list`): context, headers and the event."""
    letters = {letter.id: letter for letter in deadletters.read(settings(bootstrap), workflow)}
    if id_ not in letters:
        raise ConfigError(f"no dead letter {id_} for {workflow}; `evbus dlq list --workflow {workflow}` shows ids")
    detail = letters[id_].detail()
    text = "\n".join(f"{k}: {v}" for k, v in detail.items() if k not in ("headers", "event"))
    text += f"\nevent: {detail['event']}"
    emit(detail, as_json, text)


@dlq.command()
@workflow_option
@filters
@click.option("--all", "everything", is_flag=True, help="Redrive every dead letter not yet redriven.")
@click.option("--again", is_flag=True, help="Also redrive those already redriven once.")
@bootstrap_option
@handle_errors
def redrive(workflow, subscription, error, since, until, everything, again, bootstrap) -> None:
    """Send dead letters back to triggers.<workflow> (same idempotency keys): all with --all, or those
    the filters select."""
    if not (everything or subscription or error or since or until):
        raise click.UsageError("say what to redrive: --all, or --subscription/--error/--since/--until")
    cfg = settings(bootstrap)
    letters = _select(cfg, workflow, subscription, error, since, until, again)
    if not letters:
        click.echo(f"nothing to redrive for {workflow}")
        return
    with click.progressbar(length=len(letters), label=f"redriving {len(letters)} dead letters",
                           file=click.get_text_stream("stderr")) as bar:
        done = deadletters.redrive(cfg, workflow, letters, progress=bar.update)
    click.echo(f"redrove {done} dead letters to {cfg.trigger_topic(workflow)}")
