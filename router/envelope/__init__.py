"""Wire formats only: the event model, the Avro codec, the CloudEvents Kafka binding."""

from .cloudevents import Decoded, decode
from .model import Event, new_event

__all__ = ["Decoded", "Event", "decode", "new_event"]
