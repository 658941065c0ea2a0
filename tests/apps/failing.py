"""A workflow whose handler always fails, for the dead-letter tests."""

from router import Trigger, workflow


@workflow("boom", backoff=0.05)
def boom(trigger: Trigger) -> None:
    raise RuntimeError("always fails")
