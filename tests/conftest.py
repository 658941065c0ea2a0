"""Test session: one real Kafka broker for every test marked `kafka`, started here and stopped after.

EVBUS_TEST_BOOTSTRAP points the suite at a broker that already runs. Otherwise the session starts a
local KRaft broker (deploy/kafka) on port EVBUS_TEST_PORT (default 19192) with fresh data. Where that is
impossible a test that needs Kafka fails: it never skips.
"""

from __future__ import annotations

import os
import uuid

import pytest

from router.config import Settings
from router.kafka import local


@pytest.fixture(scope="session")
def kafka_bootstrap():
    given = os.environ.get("EVBUS_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    cluster = local.LocalCluster(local.default_home(), port=int(os.environ.get("EVBUS_TEST_PORT", "19192")))
    local.down(cluster)
    local.wipe(cluster)
    try:
        bootstrap = local.up(cluster)
    except Exception as exc:  # noqa: BLE001 - any failure to get a broker fails the tests that need one
        pytest.fail(f"no Kafka broker could be started for the tests: {exc}", pytrace=False)
    yield bootstrap
    local.down(cluster)
    local.wipe(cluster)


@pytest.fixture
def bus(kafka_bootstrap) -> Settings:
    """Settings for one test: its own namespace, so topics, groups and subscriptions are its own."""
    return Settings(bootstrap=kafka_bootstrap, namespace=f"t{uuid.uuid4().hex[:10]}.")


def pytest_collection_modifyitems(items):
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) or "bus" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)
