"""A workflow app for the broker tests: registers the workflows named in RECORD_WORKFLOWS (comma
separated); each handler appends the trigger to RECORD_OUT as a JSON line, after sleeping RECORD_SLEEP s."""

import json
import os
import threading
import time

from router import Trigger, workflow

_lock = threading.Lock()


def _make(name: str):
    def handle(trigger: Trigger) -> None:
        time.sleep(float(os.environ.get("RECORD_SLEEP", "0")))
        line = {"workflow": name, "key": trigger.idempotency_key, "event_id": trigger.event.id,
                "data": trigger.data, "offset": trigger.offset, "partition": trigger.partition}
        with _lock, open(os.environ["RECORD_OUT"], "a") as f:
            f.write(json.dumps(line) + "\n")
    handle.__name__ = f"record_{name}"
    return handle


for _name in filter(None, os.environ.get("RECORD_WORKFLOWS", "").split(",")):
    workflow(_name)(_make(_name))
