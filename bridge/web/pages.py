"""The pages: accounts, config UI, the Salesforce web tab and the dashboard."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register templates, middlewares and routes of the pages on ``app``."""
