"""`evbus route` and `evbus work`: the long-running processes."""

from __future__ import annotations

import importlib
import importlib.util
import sys
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
@click.option("--batch-size", type=int, default=2000, show_default=True, help="Most records a transaction holds.")
@click.option("--commit-interval", type=float, default=0.05, show_default=True,
              help="Longest a transaction stays open, in seconds: the latency a trigger may wait for its commit.")
@click.option("--max-buffered", type=int, default=5000, show_default=True,
              help="Records a transaction holds before handing them to the producer (all at commit time "
                   "when fewer: its partitions then join the transaction in one round trip).")
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
@click.argument("app")
@click.option("--workflow", "only", multiple=True, help="Run only these workflows (repeatable).")
@click.option("--metrics-port", type=int, default=9465, show_default=True, help="Prometheus port; 0 = off.")
@bootstrap_option
@handle_errors
def work(app, only, metrics_port, bootstrap) -> None:
    """Run the workflows that APP (module or file.py) registers with @workflow, until SIGTERM."""
    long_running()
    load_app(app)
    handlers = runner_mod.registered()
    missing = set(only) - set(handlers)
    if missing:
        raise ConfigError(f"{app} registers no workflow named {', '.join(sorted(missing))}; "
                          f"it has: {', '.join(sorted(handlers)) or 'none'}")
    if only:
        handlers = {k: v for k, v in handlers.items() if k in only}
    metrics.serve(metrics_port)
    runner_mod.run(settings(bootstrap), handlers)
