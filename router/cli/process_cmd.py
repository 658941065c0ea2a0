"""`evbus route` and `evbus work`: the long-running processes."""

from __future__ import annotations

import importlib
import os
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import click

from .. import metrics
from .. import router as router_mod
from .. import runner as runner_mod
from ..errors import ConfigError
from .common import bootstrap_option, handle_errors, long_running, settings


@click.command()
@click.option("--instance", help="Stable id of this router (its transactional id); one per process. "
              "Default: the host name.")
@click.option("--metrics-port", type=int, default=9464, show_default=True, help="Prometheus port; 0 = off.")
@click.option("--batch-size", type=int, default=2000, show_default=True,
              help="Records after which a transaction commits; while the one before it is still committing it "
                   "grows, up to 8 times this.")
@click.option("--commit-interval", type=float, default=0.01, show_default=True,
              help="Seconds a transaction stays open before it commits (longer while the commit before it is "
                   "still running): what a trigger may wait at low rates. Lower means more transactions.")
@click.option("--max-buffered", type=int, default=50_000, show_default=True,
              help="Records a transaction holds before handing them to the producer (all at commit time "
                   "when fewer: its partitions then join the transaction in one round trip); checked after each "
                   "event, so an event's triggers go over together.")
@bootstrap_option
@handle_errors
def route(instance, metrics_port, batch_size, commit_interval, max_buffered, bootstrap) -> None:
    """Route events.* to triggers.<workflow> by subscription, exactly once, until SIGTERM."""
    long_running()
    metrics.serve(metrics_port)
    router_mod.run(settings(bootstrap), instance=instance, batch_size=batch_size, commit_interval=commit_interval,
                   max_buffered=max_buffered)


def load_app(app: str) -> None:
    """Import a module (dotted name) or a .py file whose @workflow handlers register themselves."""
    if app.endswith(".py"):
        path = Path(app).resolve()
        if not path.is_file():
            raise ConfigError(f"no such file: {app}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        importlib.import_module(app)


@click.command()
@click.argument("app", required=False)
@click.option("--workflow", "only", multiple=True, help="Run only these workflows (repeatable); with "
              "--webhook, the one workflow whose triggers are POSTed.")
@click.option("--webhook", help="Deliver each trigger of --workflow by HTTP POST to this URL (no APP needed).")
@click.option("--concurrency", type=click.IntRange(1, 10000), help="Handler calls in flight per workflow "
              "(overrides @workflow; default 16). Triggers with the same key still run in order.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Most handler calls started per "
              "second, per workflow.")
@click.option("--backoff", type=click.FloatRange(min=0), help="First retry delay in seconds (doubles per attempt).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Webhook request timeout in seconds.")
@click.option("--secret-env", default="EVBUS_WEBHOOK_SECRET", show_default=True,
              help="Environment variable holding the webhook signing secret.")
@click.option("--metrics-port", type=int, default=9465, show_default=True, help="Prometheus port; 0 = off.")
@bootstrap_option
@handle_errors
def work(app, only, webhook, concurrency, rate, backoff, timeout, secret_env, metrics_port, bootstrap) -> None:
    """Run the workflows that APP (module or file.py) registers with @workflow, or one --webhook
    workflow, until SIGTERM."""
    long_running()
    specs = _webhook_spec(webhook, only, timeout, secret_env, concurrency) if webhook else _app_specs(app, only)
    overrides = {k: v for k, v in {"concurrency": concurrency, "rate": rate, "backoff": backoff}.items()
                 if v is not None}
    try:
        specs = {name: replace(spec, **overrides) for name, spec in specs.items()}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    metrics.serve(metrics_port)
    runner_mod.run(settings(bootstrap), specs)


def _app_specs(app, only) -> dict:
    if not app:
        raise ConfigError("name an APP (module or file.py with @workflow handlers), or use --webhook URL")
    load_app(app)
    specs = runner_mod.registered()
    missing = set(only) - set(specs)
    if missing:
        raise ConfigError(f"{app} registers no workflow named {', '.join(sorted(missing))}; "
                          f"it has: {', '.join(sorted(specs)) or 'none'}")
    return {k: v for k, v in specs.items() if k in only} if only else specs


def _webhook_spec(url, only, timeout, secret_env, concurrency) -> dict:
    from ..delivery.webhook import WebhookHandler
    if len(only) != 1:
        raise ConfigError("--webhook needs exactly one --workflow: the workflow whose triggers are POSTed")
    handler = WebhookHandler(url, os.environ.get(secret_env, ""), timeout=timeout, concurrency=concurrency or 16)
    return {only[0]: runner_mod.WorkflowSpec(only[0], handler)}
