# The copy is Chinese marketing text, whose full-width punctuation is meant.
# ruff: noqa: RUF001
"""The demo brand's SOPs and campaign: the onboarding sequence, repurchase reminders as
staff to-dos, birthday greetings, and a first-purchase campaign with a holdout.

Written through the campaigns services, like a real operator would through the API, and
idempotent: a second seed finds each piece by name and leaves it alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignGoal,
    CampaignStatus,
    Content,
    CouponBatch,
    Sop,
    SopStatus,
    StepAction,
    TriggerKind,
)
from campaigns.services import campaigns as campaign_services
from campaigns.services import content as content_services
from campaigns.services import levers
from campaigns.services import sops as sop_services
from campaigns.services.enrollment import triggers_scan

QUIET = {"quiet_start": "22:00", "quiet_end": "08:00", "quiet_action": "defer"}


def _content(name: str, data: dict[str, Any], user: Any) -> Content:
    existing = Content.objects.filter(name=name).first()
    return existing or content_services.content_create(data={"name": name, **data}, user=user)


def _sop_ensure(name: str, data: dict[str, Any], user: Any) -> tuple[Sop, bool]:
    existing = Sop.objects.filter(name=name).first()
    if existing is not None:
        return existing, False
    sop = sop_services.sop_create(data={"name": name, **data}, user=user)
    return sop_services.sop_activate(sop=sop, user=user), True


def demo_campaigns_seed(*, operator: Any) -> dict[str, int]:
    """Create the demo's content, coupon batch, campaign and SOPs; then run the date and
    repurchase triggers once, so the staff's to-do lists are not empty on first login."""
    created = {"contents": 0, "sops": 0, "campaigns": 0}
    batch = CouponBatch.objects.filter(name="新客立减 20 元").first()
    if batch is None:
        batch = levers.coupon_batch_create(
            data={"name": "新客立减 20 元", "value": Decimal("20"), "min_spend": Decimal("99")}
        )
    before = Content.objects.count()
    welcome = _content(
        "欢迎语 + 会员链接",
        {
            "text": "{name} 您好，我是{store}的{staff}，欢迎加入！点击成为会员，首单享礼遇。",
            "attachments": [
                {
                    "msgtype": "link",
                    "link": {
                        "title": "一键入会",
                        "url": "https://example.com/member",
                        "desc": "会员积分、生日礼、专属优惠",
                    },
                }
            ],
        },
        operator,
    )
    guide = _content(
        "产品使用指南",
        {
            "text": "新品上手指南：三步找到适合您的护理方案。",
            "attachments": [
                {
                    "msgtype": "link",
                    "link": {"title": "产品使用指南", "url": "https://example.com/guide"},
                }
            ],
        },
        operator,
    )
    coupon = _content(
        "首单优惠券",
        {
            "text": "{name}，送您一张满 99 减 20 的首单券：{coupon}，30 天内到店或商城可用。",
            "coupon_batch": batch.pk,
        },
        operator,
    )
    reminder = _content(
        "复购提醒",
        {"text": "您好，上次购买的产品差不多该用完了，需要我帮您预留一份吗？—— {staff}"},
        operator,
    )
    birthday = _content(
        "生日祝福",
        {"text": "{name}，生日快乐！{store}为您准备了一份生日礼，到店即可领取。"},
        operator,
    )
    created["contents"] = Content.objects.count() - before

    campaign = Campaign.objects.filter(name="新客 30 天首购").first()
    if campaign is None:
        campaign = campaign_services.campaign_create(
            data={
                "name": "新客 30 天首购",
                "description": "新加好友的客户在 30 天内完成首单；10% 随机留作对照组。",
                "goal": CampaignGoal.FIRST_PURCHASE,
                "goal_days": 30,
                "holdout_percent": 10,
                "status": CampaignStatus.ACTIVE,
                "starts_at": timezone.now(),
            },
            user=operator,
        )
        created["campaigns"] += 1

    specs: list[tuple[str, dict[str, Any]]] = [
        (
            "新客户 7 天培育",
            {
                "description": "加好友当天欢迎，第 3 天产品指南，第 7 天首单券；下单即退出。",
                "campaign": campaign.pk,
                "trigger_kind": TriggerKind.CONTACT_ADDED,
                "exit_on_purchase": True,
                **QUIET,
                "steps": [
                    {
                        "offset_minutes": 5,
                        "action": StepAction.WECOM_MESSAGE,
                        "content": welcome.pk,
                    },
                    {
                        "offset_days": 3,
                        "at_time": "10:00",
                        "action": StepAction.WECOM_MESSAGE,
                        "content": guide.pk,
                    },
                    {
                        "offset_days": 7,
                        "at_time": "10:00",
                        "action": StepAction.WECOM_MESSAGE,
                        "content": coupon.pk,
                    },
                ],
            },
        ),
        (
            "复购提醒",
            {
                "description": "到了复购周期的老客，交给店员一对一跟进。",
                "trigger_kind": TriggerKind.REPURCHASE_DUE,
                "steps": [
                    {
                        "action": StepAction.TODO,
                        "instruction": "电话或企业微信联系客户，确认是否需要补货。",
                        "content": reminder.pk,
                    }
                ],
            },
        ),
        (
            "生日祝福",
            {
                "trigger_kind": TriggerKind.DATE_FIELD,
                "trigger_config": {"field": "birthday", "days_before": 0},
                **QUIET,
                "steps": [
                    {"at_time": "10:00", "action": StepAction.WECOM_MESSAGE, "content": birthday.pk}
                ],
            },
        ),
    ]
    for name, data in specs:
        _unused, is_new = _sop_ensure(name, data, operator)
        created["sops"] += is_new
    if Sop.objects.filter(status=SopStatus.ACTIVE).exists():
        triggers_scan(now=timezone.now())
    return created
