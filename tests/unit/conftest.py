"""Shared fixtures of the unit tests."""
from __future__ import annotations

import os
import time

import pytest


@pytest.fixture
def utc():
    """Local time is UTC (the reference recordings ran with TZ=UTC; ctime() depends on it)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()
