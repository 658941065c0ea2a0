"""`evbus publish TYPE --tenant T --data JSON|@file`: prints the event id."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..client import Publisher
from ..errors import EventValidationError
from .common import bootstrap_option, handle_errors, settings


def parse_data(data: str | None):
    if data is None:
        return None
    text = data
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise EventValidationError(f"--data {data}: no such file")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventValidationError(f"--data is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


@click.command()
@click.argument("type")
@click.option("--tenant", required=True, help="The tenant the event belongs to.")
@click.option("--data", help="JSON payload, or @file to read it from a file.")
@click.option("--key", help="Partition key: events with the same key keep their order.")
@click.option("--source", default="evbus/cli", show_default=True, help="CloudEvents source.")
@bootstrap_option
@handle_errors
def publish(type: str, tenant: str, data: str | None, key: str | None, source: str, bootstrap: str | None) -> None:
    """Publish an event of TYPE (e.g. user.provisioned) and print its id."""
    payload = parse_data(data)
    with Publisher(settings(bootstrap), source=source) as pub:
        event_id = pub.publish(type, payload, tenant=tenant, key=key)
    click.echo(event_id)
