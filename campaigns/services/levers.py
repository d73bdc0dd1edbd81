"""The levers a campaign pulls: coupons (codes issued per customer, redeemed through a
paid order) and member points (a ledger whose balance is the sum of its lines).

Points earned by orders and referrals follow the facts in ``campaigns.receivers_levers``;
this module holds the writes a person or the dispatcher asks for.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from campaigns.models import Coupon, CouponBatch, DiscountKind, PointsEntry, PointsReason
from customers.models import ActivityKind, ActivitySource, Customer, Order, OrderStatus
from customers.services import activity_record

#: Coupon codes are read aloud at a till and typed by hand: no 0/O or 1/I to confuse.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 32**10 = 2**50 codes: guessing one is hopeless, collisions are rare
_CODE_ATTEMPTS = 5


def coupon_code_new() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _normalize_code(code: str) -> str:
    return "".join(str(code).split()).upper()


# --- coupon batches --------------------------------------------------------------------

#: The fields of a coupon batch that people set (the API and the dashboard form take these).
COUPON_BATCH_FIELDS = (
    "name",
    "campaign",
    "discount_kind",
    "value",
    "min_spend",
    "valid_days",
    "total_limit",
    "is_active",
)


def _batch_errors(batch: CouponBatch) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not (batch.name or "").strip():
        errors["name"] = "A coupon batch needs a name."
    if batch.discount_kind not in DiscountKind.values:
        errors["discount_kind"] = f"Use one of {', '.join(DiscountKind.values)}."
    if batch.value is None or batch.value <= 0:
        errors["value"] = "The value must be more than 0."
    elif batch.discount_kind == DiscountKind.PERCENT and batch.value >= 100:
        errors["value"] = "A percent discount is less than 100."
    if batch.min_spend is None or batch.min_spend < 0:
        errors["min_spend"] = "The minimum spend cannot be negative."
    if not batch.valid_days or batch.valid_days < 1 or batch.valid_days > 3650:
        errors["valid_days"] = "A coupon is valid for 1 to 3650 days."
    if batch.total_limit is not None and batch.total_limit < 1:
        errors["total_limit"] = "The limit is at least 1 (leave it empty for no limit)."
    return errors


@transaction.atomic
def coupon_batch_create(*, data: Mapping[str, Any]) -> CouponBatch:
    """A new kind of coupon (``name``, ``value``, and optionally the other fields)."""
    unknown = set(data) - set(COUPON_BATCH_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    batch = CouponBatch(**data)
    errors = _batch_errors(batch)
    if errors:
        raise ValidationError(errors)
    batch.save()
    return batch


@transaction.atomic
def coupon_batch_update(*, batch: CouponBatch, data: Mapping[str, Any]) -> list[str]:
    """Apply the given fields; returns those that changed. Coupons already issued keep
    their own expiry; a lower ``total_limit`` only stops further issues."""
    unknown = set(data) - set(COUPON_BATCH_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    # Under the same lock coupon_issue takes, so a limit change and an issue serialize.
    locked = CouponBatch.objects.select_for_update().get(pk=batch.pk)
    changed = [f for f in data if getattr(locked, f) != data[f]]
    for field in changed:
        setattr(locked, field, data[field])
    errors = _batch_errors(locked)
    if errors:
        raise ValidationError(errors)
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
        for field in changed:
            setattr(batch, field, data[field])
    return changed


# --- coupons ---------------------------------------------------------------------------


@transaction.atomic
def coupon_issue(
    *,
    batch: CouponBatch,
    customer_id: int,
    touchpoint_id: int | None = None,
    at: datetime | None = None,
) -> Coupon:
    """Issue a code of ``batch`` to the customer, valid ``batch.valid_days`` days.

    With a ``touchpoint_id`` the call is idempotent: the touchpoint's coupon, once issued,
    is returned again (a dispatcher retrying a batch must not burn a second code or count
    twice against the limit). ``total_limit`` is enforced under a lock on the batch row,
    so concurrent issuers cannot pass it together. ValidationError when the batch is
    inactive or exhausted.
    """
    issued_at = at or timezone.now()
    # The lock serialises issuers of this batch: the count below and the insert are then
    # one step, and a retried touchpoint sees the coupon its first attempt committed.
    locked = CouponBatch.objects.select_for_update().get(pk=batch.pk)
    if touchpoint_id is not None:
        existing = Coupon.objects.filter(touchpoint_id=touchpoint_id).first()
        if existing is not None:
            return existing
    if not locked.is_active:
        raise ValidationError({"batch": f"The coupon batch {locked.name!r} is not active."})
    if (
        locked.total_limit is not None
        and Coupon.objects.filter(batch=locked).count() >= locked.total_limit
    ):
        raise ValidationError(
            {"batch": f"All {locked.total_limit} coupons of {locked.name!r} are issued."}
        )
    for _attempt in range(_CODE_ATTEMPTS):
        try:
            # A savepoint, so that a colliding code leaves the outer transaction usable.
            with transaction.atomic():
                return Coupon.objects.create(
                    batch=locked,
                    customer_id=customer_id,
                    code=coupon_code_new(),
                    touchpoint_id=touchpoint_id,
                    issued_at=issued_at,
                    expires_at=issued_at + timedelta(days=locked.valid_days),
                )
        except IntegrityError:
            # Either the code collided (retry with another) or the touchpoint already has
            # a coupon of another batch (return that one: still idempotent).
            if touchpoint_id is not None:
                existing = Coupon.objects.filter(touchpoint_id=touchpoint_id).first()
                if existing is not None:
                    return existing
    raise IntegrityError(f"no free coupon code after {_CODE_ATTEMPTS} attempts")


@transaction.atomic
def coupon_redeem(*, code: str, order: Order) -> Coupon:
    """Redeem the coupon ``code`` through ``order`` and put it on the customer's timeline.

    The order must be paid, be the coupon owner's, reach the batch's minimum spend and be
    paid while the coupon is valid (issued_at <= paid_at < expires_at). Redeeming the same
    code through the same order again returns the coupon unchanged (a replayed request);
    any other second use is refused. ValidationError with the field at fault otherwise.
    """
    coupon = (
        Coupon.objects.select_for_update()
        .select_related("batch")
        .filter(code=_normalize_code(code))
        .first()
    )
    if coupon is None:
        raise ValidationError({"code": "No such coupon code."})
    if coupon.order_id is not None:
        if coupon.order_id == order.pk:
            return coupon
        raise ValidationError({"code": "This coupon has already been used."})
    errors: dict[str, str] = {}
    if order.status != OrderStatus.PAID:
        errors["order"] = "Only a paid order can redeem a coupon."
    elif order.customer_id != coupon.customer_id:
        errors["order"] = "The coupon belongs to another customer."
    elif order.amount < coupon.batch.min_spend:
        errors["order"] = f"The order is below the minimum spend of {coupon.batch.min_spend}."
    elif order.paid_at >= coupon.expires_at:
        errors["code"] = "The coupon had expired when the order was paid."
    elif order.paid_at < coupon.issued_at:
        errors["code"] = "The order was paid before the coupon was issued."
    elif Coupon.objects.filter(order=order).exists():
        errors["order"] = "This order has already redeemed a coupon."
    if errors:
        raise ValidationError(errors)
    coupon.order = order
    coupon.redeemed_at = order.paid_at
    coupon.save(update_fields=["order", "redeemed_at"])
    activity_record(
        customer=Customer(pk=coupon.customer_id),
        kind=ActivityKind.COUPON_REDEEMED,
        occurred_at=order.paid_at,
        source=ActivitySource.SYSTEM,
        payload={
            "coupon_id": coupon.pk,
            "code": coupon.code,
            "batch_id": coupon.batch_id,
            "batch": coupon.batch.name,
            "order_id": order.pk,
            "order": order.external_id,
        },
        idempotency_key=f"coupon-redeem:{coupon.pk}",
    )
    return coupon


# --- points ----------------------------------------------------------------------------


def points_balance(customer_id: int) -> int:
    """The customer's points: the sum of their ledger, computed by the database."""
    total = PointsEntry.objects.filter(customer_id=customer_id).aggregate(total=Sum("delta"))
    return int(total["total"] or 0)


def _ledger_write(
    *,
    customer: Customer,
    delta: int,
    reason: str,
    note: str,
    idempotency_key: str,
    allow_negative: bool,
) -> PointsEntry:
    if not idempotency_key:
        raise ValueError("a points entry needs an idempotency key")
    # Locking the customer row serialises every spend and adjustment of this customer:
    # two concurrent spends of the last 100 points cannot both see a balance of 100.
    Customer.objects.select_for_update().only("pk").get(pk=customer.pk)
    existing = PointsEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.customer_id != customer.pk:
            raise ValidationError({"idempotency_key": "Already used for another customer."})
        return existing
    if delta < 0 and not allow_negative:
        balance = points_balance(customer.pk)
        if balance + delta < 0:
            raise ValidationError(
                {"points": f"Not enough points: the balance is {balance}, {-delta} needed."}
            )
    return PointsEntry.objects.create(
        customer=customer,
        delta=delta,
        reason=reason,
        note=note[:255],
        idempotency_key=idempotency_key,
    )


@transaction.atomic
def points_spend(
    *, customer: Customer, points: int, note: str, idempotency_key: str
) -> PointsEntry:
    """Spend ``points`` (> 0) of the customer's balance; ValidationError when short.
    Replaying the same ``idempotency_key`` returns the first entry and spends nothing."""
    if points <= 0:
        raise ValidationError({"points": "Spend a positive number of points."})
    return _ledger_write(
        customer=customer,
        delta=-points,
        reason=PointsReason.SPEND,
        note=note,
        idempotency_key=idempotency_key,
        allow_negative=False,
    )


@transaction.atomic
def points_adjust(
    *, customer: Customer, points: int, note: str, idempotency_key: str, user: Any = None
) -> PointsEntry:
    """An operator's correction (positive or negative, never zero). A deduction may not
    take the balance below zero, as a spend may not; ``note`` should say why."""
    if points == 0:
        raise ValidationError({"points": "An adjustment of zero points changes nothing."})
    if not note.strip():
        raise ValidationError({"note": "Say why the points are adjusted."})
    who = getattr(user, "get_username", lambda: "")()
    return _ledger_write(
        customer=customer,
        delta=points,
        reason=PointsReason.ADJUST,
        note=f"{note.strip()} ({who})" if who else note.strip(),
        idempotency_key=idempotency_key,
        allow_negative=False,
    )
