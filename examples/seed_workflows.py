"""The seed's workflows (Rewst's request): each one only knows the events it subscribes to.

Run them with `evbus work examples/seed_workflows.py`. Each handler prints what it did and, when
EVBUS_DEMO_OUT names a file, appends a JSON line there so the demo can show what fired.
"""

from __future__ import annotations

import json
import os

from router import Trigger, workflow


def _record(trigger: Trigger, action: str) -> None:
    line = {"workflow": trigger.workflow, "subscription": trigger.subscription, "event_id": trigger.event.id,
            "type": trigger.event.type, "tenant": trigger.tenant, "idempotency_key": trigger.idempotency_key,
            "action": action}
    print(f"[{trigger.workflow}] {action}  ({trigger.event.type} {trigger.event.id[:8]}, {trigger.where})", flush=True)
    out = os.environ.get("EVBUS_DEMO_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


@workflow("send-welcome-email")
def send_welcome_email(trigger: Trigger) -> None:
    user = trigger.data
    _record(trigger, f"welcome email to {user.get('email', user.get('name'))}")


@workflow("provision-finance-app")
def provision_finance_app(trigger: Trigger) -> None:
    _record(trigger, f"finance app access for {trigger.data.get('name')}")


@workflow("critical-responder")
def critical_responder(trigger: Trigger) -> None:
    job = trigger.data
    _record(trigger, f"paging on-call: {job.get('job')} failed ({job.get('error', 'no detail')})")
