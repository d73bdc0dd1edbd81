"""The campaigns dashboard in real Chromium: an operator writes a content (watching the
live preview render it for a customer), builds an SOP with two steps (the second added by
the page's script), previews it and activates it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from campaigns.models import Content, Sop, SopStatus
from tests.conftest import PASSWORD, World

pytestmark = pytest.mark.browser


def test_operator_creates_content_and_a_two_step_sop_previews_and_activates_it(
    live_server: Any, transactional_db: Any, world: World, operator_user: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/campaigns/content/new/")
    page.fill("input[name=username]", operator_user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action^='/accounts/login/'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/campaigns/content/new/$"))

    # The content, with the live preview filled for the newest customer (Bob B).
    page.fill("input[name=name]", "欢迎语")
    page.fill("textarea[name=text]", "您好 {name} - {staff}")
    expect(page.locator("[data-testid=rendered-message]")).to_contain_text("您好 Bob B")
    page.click("#content-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/campaigns/content/$"))
    content = Content.objects.get(name="欢迎语")

    # The SOP: step 1 on the page, step 2 added by the script.
    page.goto(f"{live_server.url}/campaigns/sops/new/")
    page.fill("input[name=name]", "新客欢迎")
    page.select_option("select[name=trigger_kind]", "manual")
    page.fill("input[name=steps-0-offset_days]", "0")
    page.fill("input[name=steps-0-at_time]", "10:00")
    page.select_option("select[name=steps-0-action]", "wecom_message")
    page.select_option("select[name=steps-0-content]", str(content.pk))
    page.click("#add-step")
    page.fill("input[name=steps-1-offset_days]", "3")
    page.select_option("select[name=steps-1-action]", "todo")
    page.fill("input[name=steps-1-instruction]", "打电话问候")
    page.click("#sop-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/campaigns/sops/\d+/$"))
    sop = Sop.objects.get(name="新客欢迎")
    assert sop.status == SopStatus.DRAFT
    assert sop.current_version is not None
    assert sop.current_version.steps.count() == 2

    # The preview: all three persona customers would enter, two touchpoints each.
    page.click(f"a[href='/campaigns/sops/{sop.pk}/preview/']")
    expect(page.locator("[data-figure=entering]")).to_have_text("3")
    expect(page.locator("[data-figure=touchpoints]")).to_have_text("6")

    # Activate from the preview page (a CSRF-checked POST form).
    page.click(f"form[action='/campaigns/sops/{sop.pk}/activate/'] button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/campaigns/sops/{sop.pk}/$"))
    sop.refresh_from_db()
    assert sop.status == SopStatus.ACTIVE
    expect(page.locator("[data-testid=sop-status]")).to_have_text(sop.get_status_display())
