"""`python -m tests.apps.slow_take route ...` is `evbus route ...` with one change: each consume() of the
router's consumer waits 50 ms before it takes what is fetched. A rebalance that becomes due meanwhile then
has its callback run inside consume(), right after poll() handed the router a record; with the router's
real timing that happens in about one rebalance in a hundred."""

import time

from router.kafka import clients

DELAY_S = 0.05
_make_consumer = clients.consumer


class _SlowTake:
    def __init__(self, consumer) -> None:
        self._consumer = consumer

    def consume(self, *args, **kwargs):
        time.sleep(DELAY_S)
        return self._consumer.consume(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)


clients.consumer = lambda *args, **kwargs: _SlowTake(_make_consumer(*args, **kwargs))

if __name__ == "__main__":
    from router.cli.main import main

    main()
