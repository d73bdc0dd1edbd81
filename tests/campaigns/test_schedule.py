"""When a step is due, and quiet hours (corp time zone, windows across midnight)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campaigns.models import SopStep
from campaigns.services.schedule import in_quiet_hours, quiet_hours_end, step_due_at

SH = ZoneInfo("Asia/Shanghai")


def at(*args: int, tz: ZoneInfo = SH) -> datetime:
    return datetime(*args, tzinfo=tz)


def step(**kwargs: object) -> SopStep:
    return SopStep(position=0, action="todo", **kwargs)


NIGHT = {"start": time(22, 0), "end": time(8, 0)}
DAY = {"start": time(8, 0), "end": time(22, 0)}


class TestQuietHoursAcrossMidnight:
    def test_late_evening_and_early_morning_are_quiet_eight_is_not(self) -> None:
        assert in_quiet_hours(at(2026, 3, 1, 23, 30), **NIGHT)
        assert in_quiet_hours(at(2026, 3, 2, 7, 59), **NIGHT)
        assert in_quiet_hours(at(2026, 3, 1, 22, 0), **NIGHT)
        assert not in_quiet_hours(at(2026, 3, 2, 8, 0), **NIGHT)
        assert not in_quiet_hours(at(2026, 3, 2, 21, 59), **NIGHT)

    def test_quiet_hours_are_read_in_the_corp_time_zone(self) -> None:
        # 15:30 UTC is 23:30 in Shanghai.
        assert in_quiet_hours(datetime(2026, 3, 1, 15, 30, tzinfo=UTC), **NIGHT)
        assert not in_quiet_hours(datetime(2026, 3, 1, 3, 0, tzinfo=UTC), **NIGHT)

    def test_the_end_of_an_evening_in_quiet_hours_is_the_next_morning(self) -> None:
        assert quiet_hours_end(at(2026, 3, 1, 23, 30), **NIGHT) == at(2026, 3, 2, 8, 0)

    def test_the_end_of_an_early_morning_in_quiet_hours_is_the_same_morning(self) -> None:
        assert quiet_hours_end(at(2026, 3, 2, 7, 59), **NIGHT) == at(2026, 3, 2, 8, 0)

    def test_a_time_outside_quiet_hours_is_its_own_end(self) -> None:
        noon = at(2026, 3, 2, 12, 0)
        assert quiet_hours_end(noon, **NIGHT) == noon

    def test_the_end_across_a_month_boundary(self) -> None:
        assert quiet_hours_end(at(2026, 2, 28, 22, 5), **NIGHT) == at(2026, 3, 1, 8, 0)


class TestDaytimeQuietHours:
    def test_a_daytime_window_is_quiet_inside_only(self) -> None:
        assert in_quiet_hours(at(2026, 3, 2, 8, 0), **DAY)
        assert in_quiet_hours(at(2026, 3, 2, 21, 59), **DAY)
        assert not in_quiet_hours(at(2026, 3, 2, 22, 0), **DAY)
        assert not in_quiet_hours(at(2026, 3, 2, 7, 59), **DAY)

    def test_the_end_of_a_daytime_window_is_the_same_day(self) -> None:
        assert quiet_hours_end(at(2026, 3, 2, 9, 0), **DAY) == at(2026, 3, 2, 22, 0)


class TestNoQuietHours:
    def test_no_bounds_or_equal_bounds_mean_no_quiet_hours(self) -> None:
        moment = at(2026, 3, 2, 23, 0)
        assert not in_quiet_hours(moment, start=None, end=None)
        assert not in_quiet_hours(moment, start=time(9, 0), end=time(9, 0))
        assert quiet_hours_end(moment, start=time(9, 0), end=time(9, 0)) == moment


class TestStepDueAt:
    def test_a_day_offset_at_a_time_of_day_is_local(self) -> None:
        trigger = at(2026, 3, 1, 15, 0)
        due = step_due_at(step=step(offset_days=3, at_time=time(10, 0)), trigger_at=trigger)
        assert due == at(2026, 3, 4, 10, 0)

    def test_day_zero_whose_time_has_passed_is_due_at_the_trigger(self) -> None:
        trigger = at(2026, 3, 1, 15, 0)
        due = step_due_at(step=step(offset_days=0, at_time=time(10, 0)), trigger_at=trigger)
        assert due == trigger

    def test_day_zero_whose_time_is_ahead_is_due_that_day(self) -> None:
        trigger = at(2026, 3, 1, 7, 0)
        due = step_due_at(step=step(offset_days=0, at_time=time(10, 0)), trigger_at=trigger)
        assert due == at(2026, 3, 1, 10, 0)

    def test_the_local_date_counts_not_the_utc_one(self) -> None:
        # 2026-03-01 17:00 UTC is 2026-03-02 01:00 in Shanghai: day 1 is March 3rd.
        trigger = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
        due = step_due_at(step=step(offset_days=1, at_time=time(10, 0)), trigger_at=trigger)
        assert due == at(2026, 3, 3, 10, 0)

    def test_without_a_time_it_is_days_plus_minutes_after_the_trigger(self) -> None:
        trigger = at(2026, 3, 1, 15, 7)
        due = step_due_at(step=step(offset_days=2, offset_minutes=90), trigger_at=trigger)
        assert due == trigger + timedelta(days=2, minutes=90)

    def test_a_dst_free_zone_is_exactly_24_hours_a_day(self) -> None:
        # Shanghai has no DST: "day 30 at 10:00" is exactly 30 x 24 h after day 0's 10:00.
        day0 = step_due_at(
            step=step(offset_days=0, at_time=time(10, 0)), trigger_at=at(2026, 3, 1, 9, 0)
        )
        day30 = step_due_at(
            step=step(offset_days=30, at_time=time(10, 0)), trigger_at=at(2026, 3, 1, 9, 0)
        )
        assert day30 - day0 == timedelta(days=30)
        assert day30.utcoffset() == timedelta(hours=8)

    def test_a_zone_with_dst_keeps_the_wall_clock_time(self, settings: Any) -> None:
        settings.TIME_ZONE = "America/New_York"
        ny = ZoneInfo("America/New_York")
        # DST starts on 2026-03-08: day 7 at 10:00 stays 10:00 local (EDT), although the
        # clock lost an hour, so from 09:00 EST it is exactly 7 x 24 h of real time.
        trigger = at(2026, 3, 1, 9, 0, tz=ny)
        due = step_due_at(step=step(offset_days=7, at_time=time(10, 0)), trigger_at=trigger)
        assert due.astimezone(ny).replace(tzinfo=None) == datetime(2026, 3, 8, 10, 0)
        assert due.astimezone(UTC) - trigger.astimezone(UTC) == timedelta(days=7)
