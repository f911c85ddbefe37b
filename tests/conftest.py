"""Shared fixtures live in tests/fixtures/, one module per kind of real component."""

pytest_plugins = [
    "tests.fixtures.processes",
    "tests.fixtures.postgres",
    "tests.fixtures.racing",
    "tests.fixtures.models",
    "tests.fixtures.webhook",
    "tests.fixtures.s3",
]
