"""The chaos run's workflow: records each handled trigger (event id:subscription) to CHAOS_OUT."""

import os
import threading

from router import Trigger, workflow

_lock = threading.Lock()


@workflow("chaos-all", concurrency=32)
def handle(trigger: Trigger) -> None:
    with _lock, open(os.environ["CHAOS_OUT"], "a") as f:
        f.write(trigger.idempotency_key + "\n")
