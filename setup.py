"""The compiled parts of the router's hot path: the v1 event reader (router/envelope/_v1.c), the walk of a
subscription plan (router/matching/_plan.c), an event's trigger records (router/envelope/_triggers.c), the
common case of routing a record, which calls those (router/_route.c), and the hand-over of a transaction's
records to librdkafka (router/kafka/_produce.c). Optional: where they cannot be
built (no C compiler), the same code in Python runs instead (codec.read_event_py, index.candidates_py,
triggers.build_py, Router._route, confluent-kafka's produce()), the same way and more slowly."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(name, [source], optional=True, extra_compile_args=["-O2", "-Wall"],
                             depends=["router/_avro.h"])
                   for name, source in [("router.envelope._v1", "router/envelope/_v1.c"),
                                        ("router.matching._plan", "router/matching/_plan.c"),
                                        ("router.kafka._produce", "router/kafka/_produce.c"),
                                        ("router.envelope._triggers", "router/envelope/_triggers.c"),
                                        ("router._route", "router/_route.c")]])
