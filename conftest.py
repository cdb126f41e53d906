"""Test-wide settings shared by every package's tests and tests-integration."""

import pytest


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Run async tests on asyncio only, the loop the product runs on.

    Without this, anyio adds a trio run of every async test whenever trio is installed (selenium brings it in).
    """
    return "asyncio"
