"""Fixtures come from plugins in tests/support (one module per kind of thing shared)."""

pytest_plugins = [
    "tests.support.app",
    "tests.support.scripted",
    "tests.support.cli",
    "tests.support.model",
    "tests.support.remote",
    "tests.support.hub_standin",
    "tests.support.widgets",
    "tests.support.servers",
]
