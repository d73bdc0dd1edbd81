"""The funnel dashboard in real Chromium: log in, change a filter, see the figures and the
URL follow (htmx swap + pushed URL), and the charts drawn by the vendored Chart.js."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import PASSWORD, World
from tests.funnel.support import make_funnel_world

pytestmark = pytest.mark.browser


def stage_count(page: Any, stage: str) -> Any:
    return page.locator(f'#funnel-stages tr[data-stage="{stage}"] td.count')


def test_operator_filters_the_funnel_by_store(
    live_server: Any, transactional_db: Any, world: World, operator_user: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    fw = make_funnel_world(world)
    page.goto(f"{live_server.url}/funnel/?start=2026-03-01&end=2026-04-01")

    # Not signed in: the login page, which comes back to the funnel afterwards.
    page.fill("input[name=username]", operator_user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action^='/accounts/login/'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/funnel/\?start=2026-03-01&end=2026-04-01$"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(stage_count(page, "acquisition")).to_have_text("4")
    expect(stage_count(page, "activation")).to_have_text("2")
    page.wait_for_function("() => window.Chart && Chart.getChart('funnel-chart')")
    assert page.evaluate("Chart.getChart('funnel-chart').data.datasets[0].data") == [4, 2, 1, 1, 1]

    page.select_option("select[name=store]", str(fw.world.store_b.pk))

    # htmx swaps the results in place and pushes the filter into the address bar.
    expect(page).to_have_url(re.compile(rf"[?&]store={fw.world.store_b.pk}(&|$)"))
    expect(stage_count(page, "acquisition")).to_have_text("1")
    expect(stage_count(page, "activation")).to_have_text("0")
    assert "start=2026-03-01" in page.url
    page.wait_for_function("() => Chart.getChart('funnel-chart')?.data.datasets[0].data[0] === 1")
    # Still the same document (no full reload): the filter form kept its state.
    assert page.evaluate("document.querySelector('select[name=store]').value") == str(
        fw.world.store_b.pk
    )

    # A full load of the pushed URL renders the same figures.
    page.reload()
    expect(stage_count(page, "acquisition")).to_have_text("1")
