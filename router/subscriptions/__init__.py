"""Subscriptions: the model, and its store on the compacted topic with a live view for the router."""

from .model import Subscription, build
from .store import LiveView, SubscriptionStore

__all__ = ["LiveView", "Subscription", "SubscriptionStore", "build"]
