"""Every write to the channels tables. Keyword-only and typed, like ``customers.services``."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from channels.models import Channel, ChannelCode, ChannelKind, SyncRun
from channels.wecom.client import get_client
from channels.wecom.errors import WeComError, WeComPermanentError
from channels.wecom.sync import sync_run_start
from customers.models import Customer, Follow, Staff, Tag

logger = logging.getLogger(__name__)

CHANNEL_FIELDS = ("name", "kind", "cost", "description", "is_active")


def _check(data: Mapping[str, Any], *, exclude_pk: int | None = None) -> None:
    unknown = set(data) - set(CHANNEL_FIELDS)
    if unknown:
        raise TypeError(f"unknown channel fields: {sorted(unknown)}")
    name = data.get("name")
    if name is not None:
        taken = Channel.objects.filter(name=name)
        if exclude_pk is not None:
            taken = taken.exclude(pk=exclude_pk)
        if taken.exists():
            raise ValidationError({"name": "Another channel already has this name."})


@transaction.atomic
def channel_create(*, data: Mapping[str, Any]) -> Channel:
    """Create a traffic channel from validated field values (``CHANNEL_FIELDS``)."""
    _check(data)
    return Channel.objects.create(**data)


@transaction.atomic
def channel_update(*, channel: Channel, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values; returns the names of the fields that really changed
    (none on a replay, so ``updated_at`` only moves when something did)."""
    _check(data, exclude_pk=channel.pk)
    changed = [name for name, value in data.items() if getattr(channel, name) != value]
    for name in changed:
        setattr(channel, name, data[name])
    if changed:
        channel.save(update_fields=[*changed, "updated_at"])
    return changed


# --- Channel codes (WeCom 「联系我」 contact ways) ----------------------------------------
#
# A code exists twice: as a contact way in WeCom (its config_id, QR code and state) and as
# a ChannelCode row here. WeCom is called outside any transaction (a slow WeCom must not
# hold row locks or a connection's transaction open) and the row is written after it; a
# row that then fails to save is compensated by deleting the contact way again, so that
# no QR code exists in WeCom that nothing here knows about.

#: WeCom caps ``state`` at 30 characters (WECOM.md §1.7).
STATE_MAX_LENGTH = 30
#: Letters, digits, "_" and "-": safe in WeCom, in URLs, in callbacks' XML and in a
#: spreadsheet export; anything else (spaces, "&", Chinese) invites quoting bugs.
STATE_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
#: Referral codes carry this prefix; operators may not pick it, so a hand-made code can
#: never squat a customer's referral state.
REFERRAL_STATE_PREFIX = "ref-"
#: WeCom: at most 100 members per contact way (WECOM.md §1.7, §1.14).
MAX_CODE_STAFF = 100
#: WeCom shows the remark in its console; the brief keeps it short like the state.
REMARK_MAX_LENGTH = 30
#: send_welcome_msg's text.content is at most 4000 bytes (UTF-8), not characters.
WELCOME_TEXT_MAX_BYTES = 4000
#: send_welcome_msg takes at most 9 attachments of these kinds (WECOM.md §1.8).
MAX_WELCOME_ATTACHMENTS = 9
WELCOME_ATTACHMENT_TYPES = frozenset({"image", "link", "miniprogram", "video", "file"})
REFERRAL_CHANNEL_NAME = "老带新 / Referral"

#: What a permanent WeCom error on a contact way means for the person filling the form:
#: (field to fix, message). Codes not listed are reported against the whole form. Marked
#: with gettext_noop so makemessages finds them; translated when raised.
_CONTACT_WAY_ERRORS: dict[int, tuple[str, str]] = {
    40003: (
        "staff",
        gettext_noop(
            "A staff member is not a member of the WeCom corp; run a sync or pick other staff."
        ),
    ),
    60111: (
        "staff",
        gettext_noop(
            "A staff member's userid does not exist in WeCom; run a sync or pick other staff."
        ),
    ),
    60011: (
        "staff",
        gettext_noop("The WeCom app's visible range does not include one of these staff members."),
    ),
    40098: ("staff", gettext_noop("A staff member has not verified their identity in WeCom yet.")),
    41041: (
        "staff",
        gettext_noop(
            "Too many staff for this code in WeCom: a single-member code takes "
            "exactly one staff member, a multi-member code at most 100. Create a "
            "new code instead."
        ),
    ),
    41043: (NON_FIELD_ERRORS, gettext_noop("This code has no WeCom config_id.")),
    41044: (NON_FIELD_ERRORS, gettext_noop("This code no longer exists in WeCom.")),
    41045: (
        NON_FIELD_ERRORS,
        gettext_noop(
            "The corp reached WeCom's limit of codes created through the API "
            "(500,000); deactivate codes that are no longer used."
        ),
    ),
    48002: (
        NON_FIELD_ERRORS,
        gettext_noop(
            "The configured WeCom secret may not manage contact ways: use the "
            "customer-contact (客户联系) secret."
        ),
    ),
    84074: (NON_FIELD_ERRORS, gettext_noop("The WeCom app has no customer-contact permission.")),
}


def _wecom_validation_error(exc: WeComPermanentError) -> ValidationError:
    """A permanent WeCom error as a ValidationError naming the field to fix."""
    field, message = _CONTACT_WAY_ERRORS.get(
        exc.errcode or 0, (NON_FIELD_ERRORS, gettext_noop("WeCom refused the code."))
    )
    # WeCom's errmsg carries a request hint and our IP (WECOM.md §0): keep the words only.
    errmsg = exc.errmsg.split(", hint:")[0].strip()
    text = gettext(message) + f" (WeCom errcode {exc.errcode}: {errmsg})"
    return ValidationError({field: [ValidationError(text, code=f"wecom_{exc.errcode}")]})


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _generate_state() -> str:
    """A fresh state: "c" + 12 random base36 characters (~62 bits, so collisions are
    theoretical; the unique index still has the last word)."""
    for _attempt in range(5):
        state = "c" + _base36(secrets.randbits(62)).rjust(12, "0")
        if not ChannelCode.objects.filter(state=state).exists():
            return state
    raise RuntimeError("could not generate a unique channel code state")  # pragma: no cover


def _check_state(state: str, *, exclude_pk: int | None = None) -> None:
    """An operator-chosen state: short enough for WeCom, safe characters, not reserved,
    and not used by another code (a state names exactly one code, or attribution lies)."""
    if len(state) > STATE_MAX_LENGTH:
        raise ValidationError(
            {
                "state": gettext("At most %(max)d characters (a WeCom limit).")
                % {"max": STATE_MAX_LENGTH}
            },
            code="max_length",
        )
    if not STATE_PATTERN.fullmatch(state):
        raise ValidationError(
            {"state": gettext("Use only letters, digits, “_” and “-”.")}, code="invalid"
        )
    if state.startswith(REFERRAL_STATE_PREFIX):
        raise ValidationError(
            {"state": gettext("States starting with “ref-” are reserved for referral codes.")},
            code="reserved",
        )
    taken = ChannelCode.objects.filter(state=state)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ValidationError(
            {"state": gettext("Another channel code already uses this state.")}, code="unique"
        )


def _check_staff(staff: Iterable[Staff]) -> list[Staff]:
    members = list({member.pk: member for member in staff}.values())
    if not members:
        raise ValidationError({"staff": gettext("Choose at least one staff member.")})
    if len(members) > MAX_CODE_STAFF:
        raise ValidationError(
            {
                "staff": gettext("At most %(max)d staff members per code (a WeCom limit).")
                % {"max": MAX_CODE_STAFF}
            }
        )
    unusable = sorted(m.name for m in members if not m.wecom_userid or not m.is_active)
    if unusable:
        raise ValidationError(
            {
                "staff": gettext("Not active WeCom members: %(names)s.")
                % {"names": ", ".join(unusable)}
            }
        )
    return members


def _check_welcome(text: str, attachments: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if len(text.encode("utf-8")) > WELCOME_TEXT_MAX_BYTES:
        raise ValidationError(
            {"welcome_text": gettext("At most 4000 bytes (about 1300 Chinese characters).")}
        )
    items = [dict(item) for item in attachments]
    if len(items) > MAX_WELCOME_ATTACHMENTS:
        raise ValidationError({"welcome_attachments": gettext("At most 9 attachments.")})
    for item in items:
        if item.get("msgtype") not in WELCOME_ATTACHMENT_TYPES:
            raise ValidationError(
                {
                    "welcome_attachments": gettext(
                        "Each attachment needs a msgtype: image, link, miniprogram, video or file."
                    )
                }
            )
    return items


def _way_body(
    *, name: str, state: str, members: Sequence[Staff], skip_verify: bool
) -> dict[str, Any]:
    return {
        "remark": name[:REMARK_MAX_LENGTH],
        "state": state,
        "skip_verify": skip_verify,
        # Sorted, so that the same staff always make the same request (replays compare equal).
        "user": sorted(str(m.wecom_userid) for m in members),
    }


def _delete_way_quietly(config_id: str) -> None:
    """Compensation: remove a contact way whose row could not be saved. A failure here
    leaves an orphan in WeCom, logged with its config_id for a manual clean-up."""
    try:
        get_client().del_contact_way(config_id)
    except WeComError:
        logger.exception("orphaned WeCom contact way %s: delete it by hand", config_id)


def channel_code_create(
    *,
    channel: Channel,
    name: str,
    staff: Iterable[Staff],
    state: str = "",
    skip_verify: bool = True,
    welcome_text: str = "",
    welcome_attachments: Sequence[Mapping[str, Any]] = (),
    auto_tags: Iterable[Tag] = (),
    referrer: Customer | None = None,
) -> ChannelCode:
    """Create a channel code: a QR contact way in WeCom, then its row here.

    ``state`` is generated when blank. Single-staff codes are WeCom type 1, several staff
    type 2. Invalid input raises ValidationError before WeCom is called; a permanent WeCom
    error raises ValidationError naming the field to fix; transient WeCom errors
    (``WeComTransientError``) propagate for the caller to retry. Must not be called inside
    ``transaction.atomic()``: it makes network calls.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": gettext("Give the code a name.")})
    if not channel.is_active:
        raise ValidationError({"channel": gettext("This channel is inactive.")})
    members = _check_staff(staff)
    attachments = _check_welcome(welcome_text, welcome_attachments)
    state = state.strip()
    if state:
        _check_state(state)
    else:
        state = _generate_state()
    return _code_create(
        channel=channel,
        name=name,
        members=members,
        state=state,
        skip_verify=skip_verify,
        welcome_text=welcome_text,
        welcome_attachments=attachments,
        auto_tags=list(auto_tags),
        referrer=referrer,
    )


def _code_create(
    *,
    channel: Channel,
    name: str,
    members: list[Staff],
    state: str,
    skip_verify: bool,
    welcome_text: str,
    welcome_attachments: list[dict[str, Any]],
    auto_tags: list[Tag],
    referrer: Customer | None,
) -> ChannelCode:
    body = {
        "type": 1 if len(members) == 1 else 2,
        "scene": 2,  # a QR code: only scene 2 answers a qr_code (WECOM.md §1.7)
        "style": 1,
        **_way_body(name=name, state=state, members=members, skip_verify=skip_verify),
    }
    try:
        answer = get_client().add_contact_way(body)
    except WeComPermanentError as exc:
        raise _wecom_validation_error(exc) from exc
    config_id = str(answer["config_id"])
    try:
        with transaction.atomic():
            code = ChannelCode.objects.create(
                channel=channel,
                name=name,
                state=state,
                skip_verify=skip_verify,
                welcome_text=welcome_text,
                welcome_attachments=welcome_attachments,
                referrer=referrer,
                config_id=config_id,
                qr_code=str(answer.get("qr_code") or ""),
            )
            code.staff.set(members)
            code.auto_tags.set(auto_tags)
    except IntegrityError as exc:
        _delete_way_quietly(config_id)
        if ChannelCode.objects.filter(state=state).exists():
            # Another request took the state between our check and our insert.
            raise ValidationError(
                {"state": gettext("Another channel code already uses this state.")},
                code="unique",
            ) from exc
        raise
    except BaseException:
        _delete_way_quietly(config_id)
        raise
    return code


def channel_code_update(
    *,
    code: ChannelCode,
    channel: Channel | None = None,
    name: str | None = None,
    staff: Iterable[Staff] | None = None,
    state: str | None = None,
    skip_verify: bool | None = None,
    welcome_text: str | None = None,
    welcome_attachments: Sequence[Mapping[str, Any]] | None = None,
    auto_tags: Iterable[Tag] | None = None,
) -> list[str]:
    """Change a code; ``None`` leaves a field as it is. Returns the fields that changed.

    Remark (name), state, staff and skip_verify live in WeCom too: they are sent with
    update_contact_way first (``user`` overwrites WeCom's list), outside any transaction,
    then saved here. A changed state only applies to new scans: follows that came in
    through the old state keep it and no longer count for this code.
    """
    if not code.is_active:
        raise ValidationError(gettext("A deactivated code cannot be changed."), code="inactive")
    new: dict[str, Any] = {}
    if channel is not None and channel.pk != code.channel_id:
        if not channel.is_active:
            raise ValidationError({"channel": gettext("This channel is inactive.")})
        new["channel"] = channel
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": gettext("Give the code a name.")})
        if name != code.name:
            new["name"] = name
    if state is not None:
        state = state.strip()
        if not state:
            raise ValidationError({"state": gettext("A code's state cannot be blank.")})
        if state != code.state:
            _check_state(state, exclude_pk=code.pk)
            new["state"] = state
    if skip_verify is not None and skip_verify != code.skip_verify:
        new["skip_verify"] = skip_verify
    if welcome_text is not None or welcome_attachments is not None:
        text = code.welcome_text if welcome_text is None else welcome_text
        items = _check_welcome(
            text, code.welcome_attachments if welcome_attachments is None else welcome_attachments
        )
        if text != code.welcome_text:
            new["welcome_text"] = text
        if items != code.welcome_attachments:
            new["welcome_attachments"] = items
    old_members = list(code.staff.all())
    members = old_members
    if staff is not None:
        members = _check_staff(staff)
        if {m.pk for m in members} == {m.pk for m in old_members}:
            members = old_members
        else:
            new["staff"] = members
    tags: list[Tag] | None = None
    if auto_tags is not None:
        tags = list(auto_tags)
        if {t.pk for t in tags} != set(code.auto_tags.values_list("pk", flat=True)):
            new["auto_tags"] = tags
    if not new:
        return []

    wecom_fields = {"name", "state", "staff", "skip_verify"}
    in_wecom = bool(code.config_id) and bool(wecom_fields & set(new))
    old_body = _way_body(
        name=code.name, state=code.state, members=old_members, skip_verify=code.skip_verify
    )
    if in_wecom:
        body = _way_body(
            name=new.get("name", code.name),
            state=new.get("state", code.state),
            members=members,
            skip_verify=new.get("skip_verify", code.skip_verify),
        )
        try:
            get_client().update_contact_way({"config_id": code.config_id, **body})
        except WeComPermanentError as exc:
            raise _wecom_validation_error(exc) from exc
    try:
        with transaction.atomic():
            scalar = [f for f in new if f not in ("staff", "auto_tags")]
            for field in scalar:
                setattr(code, field, new[field])
            if scalar:
                code.save(update_fields=[*scalar, "updated_at"])
            if "staff" in new:
                code.staff.set(new["staff"])
            if "auto_tags" in new:
                code.auto_tags.set(new["auto_tags"])
            if not scalar:
                # Only relations changed: still move updated_at, so lists sort it as changed.
                code.save(update_fields=["updated_at"])
    except BaseException:
        if in_wecom:
            # Put WeCom back the way the row still describes it (best effort).
            try:
                get_client().update_contact_way({"config_id": code.config_id, **old_body})
            except WeComError:
                logger.exception("WeCom contact way %s differs from its row", code.config_id)
        code.refresh_from_db()
        raise
    return sorted(new)


def channel_code_deactivate(*, code: ChannelCode) -> bool:
    """Delete the contact way in WeCom and keep the row inactive, so customers who came in
    through its state stay attributed. Idempotent; returns whether anything changed."""
    if not code.is_active:
        return False
    if code.config_id:
        try:
            get_client().del_contact_way(code.config_id)
        except WeComPermanentError as exc:
            # 41044: already gone in WeCom (deleted by hand, or a retried request).
            if exc.errcode != 41044:
                raise _wecom_validation_error(exc) from exc
    changed = ChannelCode.objects.filter(pk=code.pk, is_active=True).update(
        is_active=False, updated_at=timezone.now()
    )
    code.is_active = False
    return changed == 1


def referral_channel() -> Channel:
    """The channel referral codes belong to: the oldest active channel of kind referral,
    else one created with a fixed name (get_or_create copes with a concurrent create)."""
    existing = (
        Channel.objects.filter(kind=ChannelKind.REFERRAL, is_active=True).order_by("id").first()
    )
    if existing is not None:
        return existing
    channel, _created = Channel.objects.get_or_create(
        name=REFERRAL_CHANNEL_NAME, defaults={"kind": ChannelKind.REFERRAL}
    )
    return channel


def _referral_staff(customer: Customer) -> Staff | None:
    """Who a referred friend adds: the customer's owner, else the staff member of the
    customer's earliest active follow (only active WeCom members can be on a code)."""
    owner = customer.owner
    if owner is not None and owner.is_active and owner.wecom_userid:
        return owner
    follow = (
        Follow.objects.filter(
            customer=customer,
            deleted_at__isnull=True,
            staff__is_active=True,
            staff__wecom_userid__isnull=False,
        )
        .select_related("staff")
        .order_by("added_at", "id")
        .first()
    )
    return follow.staff if follow is not None else None


def _active_referral_code(customer: Customer) -> ChannelCode | None:
    return ChannelCode.objects.filter(referrer=customer, is_active=True).order_by("id").first()


def referral_code_for(*, customer: Customer) -> ChannelCode:
    """The customer's own referral code (老带新), created on the first call.

    Idempotent, even when two requests race: the state is derived from the customer
    (``ref-<id in base36>``, with a suffix after deactivated ones), so the unique index
    lets exactly one row in; the loser's WeCom contact way is deleted again and the
    winner's code returned.
    """
    existing = _active_referral_code(customer)
    if existing is not None:
        return existing
    staff = _referral_staff(customer)
    if staff is None:
        raise ValidationError(
            {"customer": gettext("The customer has no staff member to add; assign an owner.")}
        )
    retired = ChannelCode.objects.filter(referrer=customer).count()
    state = f"{REFERRAL_STATE_PREFIX}{_base36(customer.pk)}"
    if retired:
        state += f"-{retired}"
    try:
        return _code_create(
            channel=referral_channel(),
            # Stored, so not translated: the channel's own bilingual name prefixes it.
            name=f"{REFERRAL_CHANNEL_NAME}: {customer.name}"[:128],
            members=[staff],
            state=state,
            skip_verify=True,
            welcome_text="",
            welcome_attachments=[],
            auto_tags=[],
            referrer=customer,
        )
    except ValidationError:
        winner = _active_referral_code(customer)
        if winner is not None:
            return winner
        raise


# --- WeCom sync runs -------------------------------------------------------------------


def sync_request() -> SyncRun:
    """Start a full WeCom sync (or return the one running) and enqueue its task once the
    transaction commits, so the worker never looks for a run it cannot see yet.

    Enqueuing again for a running run is harmless: its lease lets one worker execute it,
    and resumes it if the worker that held it died.
    """
    # Imported here: channels.tasks may import services (callback tasks), not vice versa.
    from channels import tasks

    run = sync_run_start()
    run_id = run.pk
    transaction.on_commit(lambda: tasks.wecom_sync.delay(run_id))
    return run
