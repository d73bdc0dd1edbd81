"""The store-staff phone pages (/m/) in real Chromium at an iPhone-sized viewport (390x844):
a clerk signs in, completes a to-do, opens a customer from My customers, records a
purchase and sees the stage change, adds a tag and a note; every page is checked for
horizontal scroll and small tap targets, and saved as a full-page screenshot under
var/screenshots/mobile/. The WeCom chat sidebar is driven inside a fake WeCom client
(a ``wx`` object injected before the page's scripts, the WeCom user agent) from an
anonymous visit through the simulator's OAuth page to the chatted customer's card.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from campaigns.models import Touchpoint, TouchpointKind, TouchpointStatus
from channels.models import ChannelCode
from channels.wecom.simulator import Simulator
from customers.models import ActivityKind, Customer, Order
from customers.services import activity_record
from funnel.models import Milestones
from tests.campaigns.factories import EnrollmentFactory, TouchpointFactory
from tests.channels.wecom_support import make_sim, point_app_at
from tests.conftest import PASSWORD, World
from tests.factories import ChannelFactory, TagFactory

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots" / "mobile"
PHONE = {"width": 390, "height": 844}
NARROW = {"width": 360, "height": 740}
MIN_TAP = 44
#: WeCom's JS-SDK is loaded from its CDN; tests never reach the internet, and the page must
#: cope when the scripts fail (they do outside China's networks, or offline).
WECOM_SDK = re.compile(r"^https://(res\.wx\.qq\.com|open\.work\.weixin\.qq\.com)/")
#: A WeCom client's user agent (the sidebar's script asks for "wxwork").
WECOM_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh"
)
#: The JS-SDK as the WeCom client provides it, reduced to what the sidebar calls.
FAKE_WX = """
window.wx = {
  agentConfig: function (config) {
    sessionStorage.setItem("agentConfig", JSON.stringify(config));
    setTimeout(function () { config.success({ errMsg: "agentConfig:ok" }); }, 0);
  },
  invoke: function (name, args, callback) {
    sessionStorage.setItem("invoked", name);
    setTimeout(function () {
      callback({ err_msg: name + ":ok", userId: "%(external_userid)s" });
    }, 0);
  },
};
"""


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    """The WeCom simulator: the sidebar's jsapi ticket and the OAuth sign-in page."""
    with make_sim(contacts=6, staff=2) as running:
        point_app_at(settings, running)
        settings.WECOM_AGENT_ID = "1000002"
        yield running


@pytest.fixture
def shop(transactional_db: Any, world: World, sim: Simulator) -> World:
    """clerk_a's day: customer_a retained (stage 3) with a to-do due, a tag to pick, a
    channel code with its QR image on the simulator."""
    clerk, customer = world.clerk_a, world.customer_a
    clerk.wecom_userid = sim.dataset.staff_ids[0]
    clerk.save(update_fields=["wecom_userid"])
    customer.external_userid = "wmBrowserAlice"
    customer.save(update_fields=["external_userid"])
    world.customer_b.external_userid = "wmBrowserBob"
    world.customer_b.save(update_fields=["external_userid"])
    # Through the service, so the funnel follows: activated, then engaged after the
    # retention window -> stage 3; a first purchase makes it 4 (revenue).
    activity_record(
        customer=customer,
        kind=ActivityKind.MESSAGE_RECEIVED,
        occurred_at=customer.acquired_at + timedelta(days=1),
    )
    activity_record(
        customer=customer,
        kind=ActivityKind.MESSAGE_RECEIVED,
        occurred_at=customer.acquired_at + timedelta(days=10),
    )
    assert Milestones.objects.get(customer=customer).stage == 3
    TouchpointFactory(
        enrollment=EnrollmentFactory(customer=customer),
        staff=clerk,
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        due_at=timezone.now() - timedelta(hours=2),
        rendered_text="Alice, the spring collection is in store: come and try it on!",
    )
    TagFactory(name="VIP")
    code = ChannelCode.objects.create(
        channel=ChannelFactory(),
        name="Counter A",
        state="browser_counter_a",
        qr_code=f"{sim.base_url}qr/browser_counter_a.png",
    )
    code.staff.add(clerk)
    return world


def _phone_context(browser: Any, **extra: Any) -> Any:
    context = browser.new_context(
        locale="zh-CN",
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        **extra,
    )
    context.set_default_timeout(15_000)
    context.route(WECOM_SDK, lambda route: route.abort())
    return context


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = _phone_context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


# --- checks ------------------------------------------------------------------------------

SMALL_TARGETS_JS = """
(minTap) => {
  const small = [];
  for (const el of document.querySelectorAll("a, button, input, select")) {
    if (el.type === "hidden" || el.closest(".visually-hidden")) continue;
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    // A checkbox or radio is tapped through its label.
    const target = (el.type === "checkbox" || el.type === "radio") && el.closest("label")
      ? el.closest("label") : el;
    const box = target.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;  // not rendered (closed <details>)
    if (box.height < minTap - 0.5) {
      const text = (el.textContent || el.value || el.name || "").trim().slice(0, 30);
      small.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}` +
        `${el.className ? "." + String(el.className).replace(/ +/g, ".") : ""}` +
        ` "${text}" ${box.height.toFixed(1)}px`);
    }
  }
  return small;
}
"""


def check_phone_page(page: Any, name: str) -> None:
    """No horizontal scroll, every tap target at least 44 px high, and a screenshot."""
    page.wait_for_load_state("load")
    # From the top: a sticky header is drawn where the page was scrolled to otherwise.
    page.evaluate("() => window.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{name}: horizontal scroll ({widths[0]} > {widths[1]} px)"
    small = page.evaluate(SMALL_TARGETS_JS, MIN_TAP)
    assert not small, f"{name}: tap targets under {MIN_TAP} px high: {small}"
    # The narrowest phones the pages support (360 px): still no horizontal scroll.
    page.set_viewport_size(NARROW)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    page.set_viewport_size(PHONE)
    assert widths[0] <= widths[1], f"{name} at 360 px: horizontal scroll ({widths[0]} px)"


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/m/login/")
    check_phone_page(page, "login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/m/login/'] button[type=submit]")


# --- tests -------------------------------------------------------------------------------


def test_clerk_works_through_the_day_on_a_phone(live_server: Any, shop: World, phone: Any) -> None:
    from playwright.sync_api import expect

    page, base = phone, live_server.url
    customer = shop.customer_a
    todo = Touchpoint.objects.get(customer=customer, kind=TouchpointKind.TODO)

    sign_in(page, base, "clerk_a")
    expect(page).to_have_url(f"{base}/m/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")

    # Today: the overdue to-do with its message; Done removes it in place.
    row = page.locator(f"#todo-{todo.pk}")
    expect(row).to_be_visible()
    expect(row).to_contain_text("spring collection")
    check_phone_page(page, "today")
    row.locator("form[action$='/done/'] button[type=submit]").click()
    expect(page.locator(f"#todo-{todo.pk}")).to_have_count(0)
    todo.refresh_from_db()
    assert todo.status == TouchpointStatus.DONE

    # My customers: only the clerk's own; open Alice's card.
    page.locator(".m-tabbar a[href='/m/customers/']").click()
    expect(page).to_have_url(f"{base}/m/customers/")
    rows = page.locator("[data-testid=customer-row]")
    expect(rows).to_have_count(1)
    check_phone_page(page, "customers")
    rows.filter(has_text=customer.name).locator("a.row-link").click()
    expect(page).to_have_url(f"{base}/m/customers/{customer.pk}/")

    # The card: record a purchase, and the stage moves from retention to revenue at once.
    stage = page.locator("[data-testid=card-stage-label]")
    expect(stage).to_have_class(re.compile(r"\bm-stage-3\b"))
    orders = page.locator("[data-testid=card-orders]")
    orders.locator("summary").click()
    form = page.locator("[data-testid=order-form]")
    form.locator("input[name=amount]").fill("128.00")
    form.locator("select[name=product_role]").select_option("profit")
    form.locator("input[name=product_name]").fill("Spring coat")
    form.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=card-orders]")).to_contain_text("Spring coat")
    expect(page.locator("[data-testid=card-stage-label]")).to_have_class(
        re.compile(r"\bm-stage-4\b")
    )
    assert Order.objects.filter(customer=customer).count() == 1
    assert Milestones.objects.get(customer=customer).stage == 4

    # A tag, then a note, each swapped in place.
    page.locator("#card-tag-select").select_option(label="VIP")
    page.locator("[data-testid=tag-form] button[type=submit]").click()
    expect(page.locator("[data-testid=tag-chip]", has_text="VIP")).to_be_visible()
    note = page.locator("[data-testid=note-form]")
    note.locator("textarea[name=body]").fill("Prefers weekend visits; size M.")
    note.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=card-notes]")).to_contain_text("Prefers weekend visits")
    assert customer.tag_links.filter(tag__name="VIP").exists()
    assert customer.notes.filter(body__startswith="Prefers weekend").exists()
    check_phone_page(page, "card")

    # My code: the QR code to show at the counter.
    page.locator(".m-tabbar a[href='/m/code/']").click()
    expect(page).to_have_url(f"{base}/m/code/")
    expect(page.locator(".qr-card img")).to_be_visible()
    page.wait_for_function("() => document.querySelector('.qr-card img').naturalWidth > 0")
    check_phone_page(page, "code")

    # The sidebar opened in a plain browser explains itself (the SDK did not load).
    page.goto(f"{base}/m/sidebar/")
    expect(page.locator("[data-testid=sidebar-outside]")).to_be_visible()
    expect(page.locator("[data-testid=sidebar]")).to_have_attribute("data-state", "outside")
    check_phone_page(page, "sidebar")


def test_sidebar_in_wecom_signs_in_and_opens_the_chatted_customers_card(
    live_server: Any, shop: World, sim: Simulator, browser: Any
) -> None:
    from playwright.sync_api import expect

    base, customer = live_server.url, shop.customer_a
    context = _phone_context(browser, user_agent=WECOM_UA)
    context.add_init_script(FAKE_WX % {"external_userid": customer.external_userid})
    page = context.new_page()
    try:
        # Anonymous: WeCom OAuth (the simulator's authorize page stands in for WeCom's).
        page.goto(f"{base}/m/sidebar/")
        userid = shop.clerk_a.wecom_userid
        page.locator(f"a:has-text('({userid})')").click()
        # Signed in, back on the sidebar, which reads the contact and opens the card.
        expect(page).to_have_url(f"{base}/m/customers/{customer.pk}/?sidebar=1")
        expect(page.locator("[data-testid=customer-card]")).to_have_attribute(
            "data-id", str(customer.pk)
        )
        config = json.loads(page.evaluate("() => sessionStorage.getItem('agentConfig')"))
        assert config["corpid"] == sim.corp_id and config["agentid"] == "1000002"
        assert config["jsApiList"] == ["getCurExternalContact"]
        assert re.fullmatch(r"[0-9a-f]{40}", config["signature"])
        assert page.evaluate("() => sessionStorage.getItem('invoked')") == "getCurExternalContact"
        check_phone_page(page, "sidebar-card")
    finally:
        context.close()


def test_sidebar_for_a_customer_the_clerk_may_not_see_is_not_found(
    live_server: Any, shop: World, browser: Any
) -> None:
    from playwright.sync_api import expect

    base = live_server.url
    context = _phone_context(browser, user_agent=WECOM_UA)
    context.add_init_script(FAKE_WX % {"external_userid": shop.customer_b.external_userid})
    page = context.new_page()
    try:
        sign_in(page, base, "clerk_a")
        expect(page).to_have_url(f"{base}/m/")
        with page.expect_navigation(url=re.compile(r"/m/sidebar/contact/")) as landed:
            page.goto(f"{base}/m/sidebar/")
        response = landed.value
        assert response is not None and response.status == 404
        assert not Customer.objects.filter(pk=shop.customer_b.pk, follows__staff=shop.clerk_a)
    finally:
        context.close()
