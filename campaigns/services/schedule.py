"""When a step is due: offsets from the trigger in the corp's time zone, and quiet hours.

Pure functions of their arguments (no queries), shared by enrolment, version migration,
the preview and the dispatcher, so that all of them agree on the same instant.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from django.conf import settings

from campaigns.models import SopStep


def corp_tz() -> zoneinfo.ZoneInfo:
    """The corp's time zone (``settings.TIME_ZONE``): "day 3 at 10:00" means 10:00 there."""
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def step_due_at(*, step: SopStep, trigger_at: datetime) -> datetime:
    """When ``step`` is due for an enrolment triggered at ``trigger_at``.

    With ``at_time``: the local date of the trigger plus ``offset_days``, at ``at_time``,
    but never before the trigger itself (a day-0 10:00 welcome for a contact added at
    15:00 goes out at 15:00, not the next morning: "day 0" is a promise about the day).
    Without it: ``offset_days`` days plus ``offset_minutes`` after the trigger.
    """
    if step.at_time is not None:
        tz = corp_tz()
        day = trigger_at.astimezone(tz).date() + timedelta(days=step.offset_days)
        due = datetime.combine(day, step.at_time, tzinfo=tz)
        return max(due, trigger_at)
    return trigger_at + timedelta(days=step.offset_days, minutes=step.offset_minutes)


def in_quiet_hours(at: datetime, *, start: time | None, end: time | None) -> bool:
    """Whether ``at`` falls in the quiet hours [start, end) in the corp's time zone.

    ``start > end`` spans midnight (22:00-08:00: 23:30 and 07:59 are quiet, 08:00 is not);
    no bounds, or ``start == end``, mean no quiet hours (an empty window, not a full day:
    a whole day of silence would defer every touchpoint forever).
    """
    if start is None or end is None or start == end:
        return False
    local = at.astimezone(corp_tz()).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(at: datetime, *, start: time, end: time) -> datetime:
    """The first moment at or after ``at`` outside the quiet hours (``at`` itself when it
    is not in them): the end of the window, on the next morning when the window spans
    midnight and ``at`` is before midnight."""
    if not in_quiet_hours(at, start=start, end=end):
        return at
    tz = corp_tz()
    local = at.astimezone(tz)
    day = local.date()
    if start > end and local.time() >= start:
        day += timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz)
