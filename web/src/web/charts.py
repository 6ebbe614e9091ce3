"""Charts drawn on the server as SVG: they need no script, and read the same without one."""

from __future__ import annotations

from dataclasses import dataclass

from web.clients import DailyLoans

WIDTH, HEIGHT, GAP = 600, 160, 2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    first: str
    last: str


def daily_bars(days: list[DailyLoans]) -> BarChart:
    """One bar per day, scaled to the busiest day; each bar's title says its figures."""
    peak = max((d.loans for d in days), default=0)
    slot = WIDTH / max(len(days), 1)
    bars = [
        Bar(
            x=round(i * slot, 2),
            y=round(HEIGHT - (h := HEIGHT * d.loans / peak if peak else 0), 2),
            width=round(max(slot - GAP, 1), 2),
            height=round(h, 2),
            label=f"{d.day:%a %d %b}: {d.loans} loan{'s' if d.loans != 1 else ''}",
        )
        for i, d in enumerate(days)
    ]
    first = f"{days[0].day:%d %b}" if days else ""
    last = f"{days[-1].day:%d %b}" if days else ""
    return BarChart(WIDTH, HEIGHT, bars, peak, first, last)
