"""Browser-test fixtures (tests/fixtures/browser.py, until it is registered as a plugin)."""

from tests.fixtures.browser import browser, page, web_bridge, web_user  # noqa: F401
