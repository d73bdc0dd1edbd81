"""The browser suite: real Chromium (the Debian package) driven by Playwright against
pytest-django's live server.

Chromium is the system's ``/usr/bin/chromium`` (``apt-get install chromium
fonts-noto-cjk``), never a browser build downloaded by ``playwright install``. Without it
the suite is skipped with the reason, except under CI (``CI=true``) or
``SCRM_REQUIRE_BROWSER=1``, where a missing browser is a failure: a green CI must mean
that the pages really ran in a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SCRM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite may run as root (CI, containers)
    "--disable-gpu",
    "--disable-background-networking",  # no calls home from a test run
    "--disable-component-update",
    "--no-first-run",
]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives real Chromium (/usr/bin/chromium) through Playwright"
    )


def browser_required() -> bool:
    return (
        os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
        or os.environ.get("SCRM_REQUIRE_BROWSER", "").strip() == "1"
    )


def missing_browser() -> str | None:
    """Why this process cannot drive a browser, or None when it can."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is absent: the browser suite needs the Debian package "
            "(make install-browser, i.e. apt-get install chromium fonts-noto-cjk)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module.

    Playwright's sync API leaves an event loop marked running in this thread, and Django
    then refuses ORM calls from it (SynchronousOnlyOperation) although the tests' own
    calls (fixtures, assertions) are plain synchronous code. So the escape hatch is set
    while the browser is open, and the browser lives no longer than its module: the rest
    of the session keeps Django's check.
    """
    problem = missing_browser()
    if problem is not None:
        if browser_required():
            pytest.fail(f"browser required (CI or SCRM_REQUIRE_BROWSER=1): {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A Chinese browser, as the operators' are: the page must render in zh-hans.
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
