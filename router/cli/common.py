"""What every command shares: settings from options and environment, output as text or --json, errors."""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

import click

from ..config import Settings
from ..errors import EvbusError, ValidationError

bootstrap_option = click.option("--bootstrap", envvar="EVBUS_BOOTSTRAP", default=None,
                                help="Kafka bootstrap servers [env EVBUS_BOOTSTRAP; default 127.0.0.1:19092]")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def settings(bootstrap: str | None) -> Settings:
    return Settings.from_env(bootstrap=bootstrap)


def emit(record: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(record, indent=2, default=str) if as_json else text)


def handle_errors(fn):
    """Known errors become one clear line on stderr and exit 2 (bad input) or 1 (everything else)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except EvbusError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper


def setup_logging(verbose: bool) -> None:
    """One-shot commands log warnings only; long-running ones raise it to INFO with `long_running()`."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def long_running() -> None:
    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
