"""The dashboard's chart: changes per hour over the last 48 hours by direction, as plain numbers
for an inline SVG (no chart library, nothing to download)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.vocabulary import DIRECTION_LABELS, ONE_WAY

# the two one-way directions with arrows: "Salesforce → Copernica", "Copernica → Salesforce"
DIRECTIONS: tuple[tuple[str, str], ...] = tuple(
    (d, DIRECTION_LABELS[d].replace(" to ", " → ")) for d in ONE_WAY
)
WIDTH, HEIGHT = 960, 220
LEFT, BOTTOM, TOP = 40, 24, 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    direction: str
    label: str  # the tooltip: hour and count


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    maximum: int
    ticks: tuple[tuple[float, str], ...]  # (x, hour label) under the axis
    baseline: float
    total: Mapping[str, int]


def hours(now: datetime, count: int = 48) -> list[datetime]:
    """The ``count`` whole hours ending with the current one, oldest first."""
    last = now.replace(minute=0, second=0, microsecond=0)
    return [last - timedelta(hours=count - 1 - i) for i in range(count)]


def build(rows: Iterable[tuple[datetime, str, int]], now: datetime, count: int = 48) -> Chart:
    """Lay out one pair of bars per hour; directions not in ``DIRECTIONS`` are left out."""
    slots = hours(now, count)
    index = {slot: i for i, slot in enumerate(slots)}
    counts = {(slot, d): 0 for slot in slots for d, _ in DIRECTIONS}
    for hour, direction, changes in rows:
        key = (hour.replace(minute=0, second=0, microsecond=0), direction)
        if key in counts:
            counts[key] += int(changes)
    maximum = max(counts.values(), default=0)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot_w = plot_w / count
    bar_w = max(1.0, slot_w / 2 - 1)
    bars = []
    for (slot, direction), value in counts.items():
        if value == 0:
            continue
        height = plot_h * value / maximum
        offset = 0 if direction == DIRECTIONS[0][0] else bar_w
        bars.append(Bar(
            x=round(LEFT + index[slot] * slot_w + offset, 1),
            y=round(TOP + plot_h - height, 1),
            width=round(bar_w, 1),
            height=round(height, 1),
            direction=direction,
            label=f"{slot:%d %b %H:00} UTC: {value} change{'s' if value != 1 else ''}",
        ))
    ticks = tuple(
        (round(LEFT + i * slot_w, 1), f"{slot:%H:00}") for i, slot in enumerate(slots) if i % 6 == 0
    )
    total = {d: sum(v for (_, dd), v in counts.items() if dd == d) for d, _ in DIRECTIONS}
    return Chart(WIDTH, HEIGHT, tuple(bars), maximum, ticks, float(HEIGHT - BOTTOM), total)
