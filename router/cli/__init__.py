"""The `evbus` command line. Interfaces import the core; the core never imports this package."""
