"""evbus: publish events, manage subscriptions, run the router and workflows, drive a local broker."""

from __future__ import annotations

import click

from .common import setup_logging
from .kafka_cmd import kafka
from .publish_cmd import publish
from .process_cmd import route, work
from .sub_cmd import sub
from .demo_cmd import demo
from .dlq_cmd import dlq


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """The event bus for workflow automation, on Apache Kafka."""
    setup_logging(verbose)


for command in (kafka, publish, route, work, sub, dlq, demo):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="evbus")
