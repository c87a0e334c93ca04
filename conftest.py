"""Registers the test suite's plugin once for the whole repository (fixtures and markers)."""

pytest_plugins = ["seed_growth_tests.plugin"]
