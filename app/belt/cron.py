"""Cron expressions for periodic jobs: five fields, UTC, no dependency.

``minute hour day-of-month month day-of-week``, each ``*``, a number, a range ``a-b``, a list
``a,b`` or a step ``*/n`` / ``a-b/n``; day-of-week 0-6 from Sunday (7 is Sunday too). When both
day fields are restricted a day matches either (as in Vixie cron). ``@hourly``, ``@daily``,
``@weekly``, ``@monthly`` and ``@yearly`` are shorthands. Times are UTC: a server's local
time zone (and its daylight-saving jumps) never moves a schedule.

Why not ``croniter``: we need ``next_after`` over five fields and nothing else; this is about
a hundred lines with its tests, and that package changed hands in 2025.

>>> from datetime import datetime, timezone
>>> def at(s): return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()
>>> def show(ts): return datetime.fromtimestamp(ts, timezone.utc).strftime("%a %Y-%m-%d %H:%M")
>>> show(Cron("*/5 * * * *").next_after(at("2026-01-01T10:02:30")))
'Thu 2026-01-01 10:05'
>>> show(Cron("30 9 * * 1-5").next_after(at("2026-01-02T09:30:00")))  # a Friday, at 9:30 sharp
'Mon 2026-01-05 09:30'
>>> show(Cron("@monthly").next_after(at("2026-01-31T23:59:00")))
'Sun 2026-02-01 00:00'
>>> Cron("61 * * * *")
Traceback (most recent call last):
ValueError: cron '61 * * * *': minute 61 is out of range 0-59.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: A schedule that matches nothing within this many years is refused (e.g. "0 0 30 2 *").
_HORIZON_YEARS = 8


class Cron:
    """A parsed cron expression; ``next_after(ts)`` is the first matching minute after ``ts``."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = _SHORTHANDS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron {expression!r}: use five fields, minute hour day-of-month month day-of-week "
                "(e.g. '*/5 * * * *'), or @hourly, @daily, @weekly, @monthly."
            )
        sets = [_field(expression, part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, weekdays = sets
        self.weekdays = frozenset(d % 7 for d in weekdays)
        self.any_day = parts[2] == "*"
        self.any_weekday = parts[4] == "*"
        self.next_after(datetime(2000, 1, 1, tzinfo=UTC).timestamp())  # refuse one that never matches

    def next_after(self, ts: float) -> float:
        """Epoch seconds of the first matching minute strictly after ``ts``."""
        t = datetime.fromtimestamp(ts, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + _HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t.timestamp()
        raise ValueError(f"cron {self.expression!r} matches no time in {_HORIZON_YEARS} years.")

    def _day_matches(self, t: datetime) -> bool:
        in_month = t.day in self.days
        in_week = (t.weekday() + 1) % 7 in self.weekdays  # cron counts from Sunday = 0
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def __repr__(self) -> str:
        return f"Cron({self.expression!r})"


def _field(expression: str, text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = lo, hi
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = int(body)
                end = hi if step_text else start
        except ValueError:
            raise ValueError(
                f"cron {expression!r}: {part!r} is not a {name} (use numbers: *, 5, 1-5, 1,15 or */10)."
            ) from None
        for value in (start, end):
            if not lo <= value <= hi:
                raise ValueError(f"cron {expression!r}: {name} {value} is out of range {lo}-{hi}.")
        if step < 1 or start > end:
            raise ValueError(f"cron {expression!r}: {part!r} is an empty range.")
        values.update(range(start, end + 1, step))
    return frozenset(values)
