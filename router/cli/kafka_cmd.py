"""`evbus kafka up|down|status`: a real Kafka broker (KRaft) as local processes."""

from __future__ import annotations

import click

from ..kafka import local
from .common import emit, handle_errors, json_option

port_option = click.option("--port", default=19092, show_default=True, help="First broker port.")
nodes_option = click.option("--nodes", default=1, show_default=True, help="Broker nodes (1 or 3).")


def _cluster(port: int, nodes: int) -> local.LocalCluster:
    return local.LocalCluster(local.default_home(), port=port, nodes=nodes)


@click.group()
def kafka() -> None:
    """Start, stop and inspect a local Kafka broker (jars from Maven Central, cached)."""


@kafka.command()
@port_option
@nodes_option
@handle_errors
def up(port: int, nodes: int) -> None:
    """Start the broker (fetching it once) and print its bootstrap address."""
    click.echo(local.up(_cluster(port, nodes)))


@kafka.command()
@port_option
@nodes_option
@click.option("--wipe", is_flag=True, help="Also delete the broker's data.")
@handle_errors
def down(port: int, nodes: int, wipe: bool) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after 30 s)."""
    cluster = _cluster(port, nodes)
    local.down(cluster)
    if wipe:
        local.wipe(cluster)
    click.echo(f"stopped {cluster.bootstrap}")


@kafka.command()
@port_option
@nodes_option
@json_option
def status(port: int, nodes: int, as_json: bool) -> None:
    """Say whether the broker runs, and where."""
    state = local.status(_cluster(port, nodes))
    emit(state, as_json, f"{'running' if state['running'] else 'stopped'} {state['bootstrap']}")
    raise SystemExit(0 if state["running"] else 3)
