"""A pytest plugin that runs academy-py's own test suite against an exchange
that is already running (ours, or academy-py's as a process of its own),
given as ACADEMY_SUITE_EXCHANGE=host:port, instead of the aiohttp app that
academy-py's `http_exchange_server` fixture starts inside the test process.

Loaded with `-p academy_suite_plugin` (before academy-py's conftest imports
the fixture from `testing.fixture`, which this replaces).
"""

from __future__ import annotations

import os

import pytest_asyncio

import testing.fixture


@pytest_asyncio.fixture
async def http_exchange_server():
    host, port = os.environ['ACADEMY_SUITE_EXCHANGE'].rsplit(':', 1)
    yield host, int(port)


testing.fixture.http_exchange_server = http_exchange_server
