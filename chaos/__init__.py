"""The chaos run (`make chaos`): routing and delivery under process and broker faults, verified."""
