"""Server-rendered SVG bar charts: no script, no CDN, no inline style (CSP); colours are attributes.

A chart is computed here as plain geometry; ``templates/regulator/_charts.html`` draws it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


@dataclass
class BarChart:
    title: str
    width: int
    height: int
    series: Sequence[Series]
    rects: list[Rect] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  # left, top, right, bottom
    empty: bool = False


def _nice_step(value: float) -> int:
    """The smallest of 1, 2, 5 × 10^k that is at least ``value`` (a whole number of items)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def stacked_bars(title: str, categories: Sequence[tuple[str, str]], series: Sequence[Series],
                 values: Mapping[tuple[str, str], float], *, width: int = 360, height: int = 200) -> BarChart:
    """One stacked bar per category ``(key, label)``; ``values[(category, series)]``."""
    left, top, right, bottom = 44.0, 10.0, width - 6.0, height - 26.0
    chart = BarChart(title=title, width=width, height=height, series=series, plot=(left, top, right, bottom))
    totals = [sum(values.get((c, s.key), 0) for s in series) for c, _ in categories]
    peak = max(totals, default=0)
    chart.empty = peak == 0
    step = _nice_step(max(peak, 1) / 4)
    top_value = step * 4
    plot_h = bottom - top
    for i in range(5):
        chart.y_ticks.append((round(bottom - plot_h * i / 4, 1), f"{step * i:,}"))
    n = max(len(categories), 1)
    slot = (right - left) / n
    bar_w = min(slot * 0.7, 48)
    for i, (cat, label) in enumerate(categories):
        x = left + slot * i + (slot - bar_w) / 2
        y = bottom
        for s in series:
            v = values.get((cat, s.key), 0)
            if not v:
                continue
            h = plot_h * v / top_value
            y -= h
            chart.rects.append(Rect(round(x, 1), round(y, 1), round(bar_w, 1), round(h, 1), s.color,
                                    f"{label} · {s.label}: {v:,.0f}"))
        chart.x_labels.append((round(left + slot * i + slot / 2, 1), label))
    return chart


__all__ = ["BarChart", "Rect", "Series", "stacked_bars"]
