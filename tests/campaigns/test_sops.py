"""SOP definitions: validation, versions (draft in place, live -> n+1 with keep / migrate /
stop), activation, pause and archive."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import (
    Enrollment,
    EnrollmentStatus,
    SkipReason,
    SopStatus,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.services.enrollment import sop_enroll, sop_enroll_segment
from campaigns.services.sops import sop_activate, sop_archive, sop_create, sop_pause, sop_update
from tests.campaigns.factories import ContentFactory
from tests.campaigns.test_enrollment import make_sop, message_step
from tests.factories import CustomerFactory, TagFactory

pytestmark = pytest.mark.django_db


def valid(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Welcome",
        "trigger_kind": TriggerKind.MANUAL,
        "steps": [message_step()],
        **overrides,
    }


def errors_of(data: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        sop_create(data=data, user=None)
    return caught.value.message_dict


class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"name": ""}, "name"),
            ({"trigger_kind": "moon_phase"}, "trigger_kind"),
            (
                {"trigger_kind": "stage_entered", "trigger_config": {"stage": 1}},
                "trigger_config.stage",
            ),
            (
                {"trigger_kind": "stage_entered", "trigger_config": {"stage": 6}},
                "trigger_config.stage",
            ),
            (
                {"trigger_kind": "tag_added", "trigger_config": {"tag_id": 999_999}},
                "trigger_config.tag_id",
            ),
            (
                {"trigger_kind": "contact_added", "trigger_config": {"channel_ids": [999_999]}},
                "trigger_config.channel_ids",
            ),
            (
                {"trigger_kind": "date_field", "trigger_config": {"field": "anniversary"}},
                "trigger_config.field",
            ),
            (
                {
                    "trigger_kind": "date_field",
                    "trigger_config": {"field": "birthday", "days_before": 31},
                },
                "trigger_config.days_before",
            ),
            ({"trigger_kind": "manual", "trigger_config": {"stage": 2}}, "trigger_config"),
            ({"audience": {"favourite_colour": "red"}}, "audience"),
            ({"audience": {"tags_any": [999_999]}}, "audience.tags_any"),
            ({"audience": {"stages": [0]}}, "audience.stages"),
            ({"audience": {"store_ids": "1"}}, "audience.store_ids"),
            ({"audience": {"acquired_from": "yesterday"}}, "audience.acquired_from"),
            (
                {"audience": {"acquired_from": "2026-03-02", "acquired_to": "2026-03-01"}},
                "audience.acquired_to",
            ),
            ({"audience": {"active_within_days": 0}}, "audience.active_within_days"),
            ({"quiet_start": "22:00"}, "quiet_end"),
            ({"quiet_end": "08:00"}, "quiet_start"),
            ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_end"),
            ({"quiet_start": "25:00", "quiet_end": "08:00"}, "quiet_start"),
            ({"quiet_action": "shout"}, "quiet_action"),
            ({"cap_count": 3}, "cap_days"),
            ({"cap_days": 7}, "cap_count"),
            ({"cap_count": 0, "cap_days": 7}, "cap_count"),
            ({"exit_stage": 7}, "exit_stage"),
            (
                {"trigger_kind": "stage_entered", "trigger_config": {"stage": 3}, "exit_stage": 3},
                "exit_stage",
            ),
            ({"in_flight": "teleport"}, "in_flight"),
            ({"campaign": 999_999}, "campaign"),
            ({"steps": []}, "steps"),
            ({"steps": [{"action": "todo", "instruction": "x"}] * 21}, "steps"),
            ({"steps": [{"action": "fax"}]}, "steps[0].action"),
            ({"steps": [{"action": "wecom_message"}]}, "steps[0].content"),
            ({"steps": [{"action": "wecom_message", "content": 999_999}]}, "steps[0].content"),
            ({"steps": [{"action": "add_tag"}]}, "steps[0].tag"),
            ({"steps": [{"action": "todo"}]}, "steps[0].instruction"),
            (
                {"steps": [{"action": "todo", "instruction": "x", "offset_days": 4000}]},
                "steps[0].offset_days",
            ),
            (
                {"steps": [{"action": "todo", "instruction": "x", "offset_minutes": -1}]},
                "steps[0].offset_minutes",
            ),
            (
                {
                    "steps": [
                        {
                            "action": "todo",
                            "instruction": "x",
                            "at_time": "10:00",
                            "offset_minutes": 5,
                        }
                    ]
                },
                "steps[0].offset_minutes",
            ),
            (
                {"steps": [{"action": "todo", "instruction": "x", "at_time": "noonish"}]},
                "steps[0].at_time",
            ),
        ],
    )
    def test_bad_input_names_the_field(self, overrides: dict[str, Any], field: str) -> None:
        assert field in errors_of(valid(**overrides))

    def test_archived_content_is_refused_in_a_step(self) -> None:
        content = ContentFactory(is_archived=True)
        step = {"action": StepAction.WECOM_MESSAGE, "content": content.pk}
        errors = errors_of(valid(steps=[message_step(), step]))
        assert list(errors) == ["steps[1].content"]

    def test_errors_of_several_fields_are_reported_together(self) -> None:
        errors = errors_of(valid(name="", cap_count=3, steps=[{"action": "add_tag"}]))
        assert {"name", "cap_days", "steps[0].tag"} <= set(errors)

    def test_a_valid_definition_is_a_draft_with_version_one(self) -> None:
        tag = TagFactory()
        sop = sop_create(
            data=valid(
                trigger_kind="tag_added",
                trigger_config={"tag_id": tag.pk},
                audience={"stages": [1, 2], "acquired_from": "2026-01-01"},
                quiet_start="22:00",
                quiet_end="08:00",
                cap_count=2,
                cap_days=7,
                steps=[
                    message_step(offset_days=0, at_time="10:00"),
                    {"action": "add_tag", "tag": tag.pk, "offset_minutes": 30},
                ],
            ),
            user=None,
        )
        assert sop.status == SopStatus.DRAFT
        version = sop.current_version
        assert version is not None and version.number == 1 and version.published_at is None
        assert version.trigger_config == {"tag_id": tag.pk}
        assert [s.action for s in version.steps.all()] == ["wecom_message", "add_tag"]


def enrolled(sop: Any, count: int = 2) -> list[Enrollment]:
    CustomerFactory.create_batch(count)
    sop_enroll_segment(sop=sop, user=None)
    return list(Enrollment.objects.filter(sop=sop))


class TestVersions:
    def test_a_draft_is_edited_in_place(self) -> None:
        sop = make_sop(activate=False)
        version = sop.current_version
        assert version is not None
        updated = sop_update(
            sop=sop, data={"steps": [message_step(), message_step(offset_days=2)]}, user=None
        )
        assert updated.pk == version.pk and updated.number == 1
        assert SopVersion.objects.filter(sop=sop).count() == 1
        assert updated.steps.count() == 2

    def test_renaming_a_live_sop_publishes_no_version(self) -> None:
        sop = make_sop()
        version = sop_update(sop=sop, data={"name": "Renamed"}, user=None)
        assert version.number == 1
        sop.refresh_from_db()
        assert sop.name == "Renamed"

    def test_editing_a_live_sop_publishes_the_next_version(self) -> None:
        sop = make_sop()
        version = sop_update(sop=sop, data={"audience": {"stages": [1]}}, user=None)
        assert version.number == 2 and version.published_at is not None
        sop.refresh_from_db()
        assert sop.current_version_id == version.pk
        assert version.steps.count() == 1  # the steps carried over

    def test_keep_lets_customers_in_flight_finish_on_their_version(self) -> None:
        sop = make_sop(steps=[message_step(offset_days=1), message_step(offset_days=3)])
        v1 = sop.current_version
        enrolments = enrolled(sop)
        v2 = sop_update(
            sop=sop, data={"steps": [message_step(offset_days=5)], "in_flight": "keep"}, user=None
        )
        assert v2.number == 2
        rows = Touchpoint.objects.filter(sop=sop)
        assert rows.count() == 4
        assert {r.status for r in rows} == {TouchpointStatus.PENDING}
        assert {r.step.version_id for r in rows} == {v1.pk if v1 else None}
        assert set(
            Enrollment.objects.filter(pk__in=[e.pk for e in enrolments]).values_list(
                "version_id", flat=True
            )
        ) == {v1.pk if v1 else None}
        # Newcomers get the new version.
        newcomer = CustomerFactory()
        sop_enroll(sop=sop, rows=[(newcomer.pk, "k", timezone.now())])
        assert Touchpoint.objects.get(customer=newcomer).step.version_id == v2.pk

    def test_migrate_supersedes_pending_steps_and_schedules_the_future_new_ones(self) -> None:
        sop = make_sop(steps=[message_step(offset_days=1), message_step(offset_days=3)])
        enrolments = enrolled(sop)
        # One step already went out: it stays as it was.
        sent = Touchpoint.objects.filter(sop=sop).order_by("id").first()
        assert sent is not None
        Touchpoint.objects.filter(pk=sent.pk).update(status=TouchpointStatus.SENT)
        # Started 2 days ago: under the new version, day 1 is past, days 3 and 7 are ahead.
        trigger = timezone.now() - timedelta(days=2)
        Enrollment.objects.filter(sop=sop).update(trigger_at=trigger)
        v2 = sop_update(
            sop=sop,
            data={
                "steps": [
                    message_step(offset_days=1),
                    message_step(offset_days=3),
                    message_step(offset_days=7),
                ],
                "in_flight": "migrate",
            },
            user=None,
        )
        old = Touchpoint.objects.filter(sop=sop).exclude(step__version=v2)
        assert old.filter(status=TouchpointStatus.SENT).count() == 1
        superseded = old.exclude(pk=sent.pk)
        assert superseded.count() == 3
        assert {(t.status, t.skip_reason) for t in superseded} == {
            (TouchpointStatus.SKIPPED, SkipReason.SUPERSEDED)
        }
        new = Touchpoint.objects.filter(sop=sop, step__version=v2)
        assert new.count() == 2 * len(enrolments)
        assert {t.step.offset_days for t in new} == {3, 7}
        assert {t.status for t in new} == {TouchpointStatus.PENDING}
        for t in new:
            assert t.due_at == trigger + timedelta(days=t.step.offset_days)
        assert set(Enrollment.objects.filter(sop=sop).values_list("version_id", flat=True)) == {
            v2.pk
        }
        assert set(Enrollment.objects.filter(sop=sop).values_list("status", flat=True)) == {
            EnrollmentStatus.ACTIVE
        }

    def test_stop_skips_pending_steps_and_exits_customers_in_flight(self) -> None:
        sop = make_sop(steps=[message_step(offset_days=1), message_step(offset_days=3)])
        enrolled(sop)
        v2 = sop_update(sop=sop, data={"steps": [message_step()], "in_flight": "stop"}, user=None)
        rows = Touchpoint.objects.filter(sop=sop)
        assert rows.count() == 4
        assert {(t.status, t.skip_reason) for t in rows} == {
            (TouchpointStatus.SKIPPED, SkipReason.SUPERSEDED)
        }
        assert set(Enrollment.objects.filter(sop=sop).values_list("status", "exit_reason")) == {
            (EnrollmentStatus.EXITED, "version_stop")
        }
        assert v2.in_flight == "stop"

    def test_an_archived_sop_cannot_be_edited(self) -> None:
        sop = sop_archive(sop=make_sop())
        with pytest.raises(ValidationError):
            sop_update(sop=sop, data={"name": "x"}, user=None)


class TestLifecycle:
    def test_activation_publishes_the_version_and_stamps_the_time(self) -> None:
        sop = make_sop(activate=False)
        before = timezone.now()
        sop = sop_activate(sop=sop, user=None)
        assert sop.status == SopStatus.ACTIVE
        assert sop.activated_at is not None and sop.activated_at >= before
        assert sop.current_version is not None
        sop.current_version.refresh_from_db()
        assert sop.current_version.published_at is not None

    def test_activation_refuses_content_archived_since(self) -> None:
        content = ContentFactory()
        sop = make_sop(
            activate=False,
            steps=[{"action": StepAction.WECOM_MESSAGE, "content": content.pk}],
        )
        content.is_archived = True
        content.save()
        with pytest.raises(ValidationError) as caught:
            sop_activate(sop=sop, user=None)
        assert "steps[0].content" in caught.value.message_dict

    def test_pausing_leaves_touchpoints_pending(self) -> None:
        sop = make_sop()
        enrolled(sop)
        sop = sop_pause(sop=sop)
        assert sop.status == SopStatus.PAUSED
        assert set(Touchpoint.objects.filter(sop=sop).values_list("status", flat=True)) == {
            TouchpointStatus.PENDING
        }

    def test_a_draft_cannot_be_paused(self) -> None:
        with pytest.raises(ValidationError):
            sop_pause(sop=make_sop(activate=False))

    def test_archiving_skips_pending_touchpoints_and_ends_the_enrolments(self) -> None:
        sop = make_sop(steps=[message_step(), message_step(offset_days=2)])
        enrolled(sop)
        done = Touchpoint.objects.filter(sop=sop).order_by("id").first()
        assert done is not None
        Touchpoint.objects.filter(pk=done.pk).update(status=TouchpointStatus.SENT)
        sop = sop_archive(sop=sop)
        assert sop.status == SopStatus.ARCHIVED
        rows = Touchpoint.objects.filter(sop=sop).exclude(pk=done.pk)
        assert {(t.status, t.skip_reason) for t in rows} == {
            (TouchpointStatus.SKIPPED, SkipReason.PAUSED)
        }
        assert Touchpoint.objects.get(pk=done.pk).status == TouchpointStatus.SENT
        assert set(Enrollment.objects.filter(sop=sop).values_list("status", flat=True)) == {
            EnrollmentStatus.EXITED
        }
        with pytest.raises(ValidationError):
            sop_activate(sop=sop, user=None)
