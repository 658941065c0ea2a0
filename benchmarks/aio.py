"""aiokafka's transactional producer as benchmarks/batching.py's what-if and the transaction probe use it."""

from __future__ import annotations


def transactional_producer(bootstrap: str, transactional_id: str, compression: str | None = None):
    """Batches up to 1 MiB (aiokafka's default is 16 KiB: a bigger transaction would go out as several batches
    per partition, request after request) and requests up to 8 MiB; a 5 ms retry backoff as the router's
    librdkafka producer (router/kafka/clients.py); no linger, since the batches are built before they are
    handed over. `compression`: None or "lz4" (aiokafka's level 9, through cramjam)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", transactional_id=transactional_id,
                            enable_idempotence=True, linger_ms=0, max_batch_size=1 << 20,
                            max_request_size=8 << 20, compression_type=compression, retry_backoff_ms=5)
