"""Fixtures shared by the browser tests of the page."""

from __future__ import annotations

import pytest


@pytest.fixture
def page():
    """A fresh Chromium page (its own browser context), closed after the test."""
    from tests.browser import chromium_page

    with chromium_page() as page:
        yield page
