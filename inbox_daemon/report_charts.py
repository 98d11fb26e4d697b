"""The report's charts: matplotlib figures (Agg backend, no display) drawn as SVG text.

Figures are made with the object API, never ``pyplot``, so no global figure state is
shared; drawing is CPU work, so the web server calls :func:`draw_charts` in a thread. Each
SVG gets ids salted with its chart's name, so several can sit inline in one page.
"""

from __future__ import annotations

import io
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Final

import matplotlib

matplotlib.use("Agg")

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .report import Report

#: Channels or categories drawn on their own; the rest are summed as one series.
MAX_SERIES: Final = 7
_SIZE: Final = (7.5, 3.2)
#: The series of everything not drawn on its own.
_REST: Final = "(the rest)"
# rc_context changes process-wide settings: one chart is drawn at a time.
_DRAWING: Final = threading.Lock()


def draw_charts(report: Report) -> dict[str, str]:
    """The report's charts as SVG documents, by name."""
    days = sorted({row.day for row in report.volume})
    return {
        "channel": _daily(report, "channel", days, "Records per day, by channel"),
        "category": _daily(report, "category", days, "Records per day, by category"),
        "language": _bars(report.total("language"), "Records by language"),
        "sla": _sla(report),
        "ratings": _bars(
            {str(score): n for score, n in report.ratings.items()}, "Survey ratings (1-5)"
        ),
    }


def _daily(report: Report, key: str, days: Sequence[date], title: str) -> str:
    totals = report.total(key)
    shown = list(totals)[:MAX_SERIES]
    series: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in report.volume:
        value = str(getattr(row, key))
        series[value if value in shown else _REST][row.day] += row.records
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    bottom = [0] * len(days)
    labels = [day.strftime("%m-%d") for day in days]
    for name in [*shown, _REST] if _REST in series else shown:
        heights = [series[name].get(day, 0) for day in days]
        axes.bar(labels, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    _finish(figure, axes, title, legend=bool(days))
    return _svg(figure, key)


def _bars(counts: Mapping[str, int], title: str) -> str:
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    axes.bar(list(counts), list(counts.values()), color="#1e6bd6")
    _finish(figure, axes, title, legend=False)
    return _svg(figure, title)


def _sla(report: Report) -> str:
    priorities = sorted({row.priority for row in report.sla})
    outcomes = {"met": "#2e7d32", "missed": "#c62828", "open_in_time": "#9e9e9e"}
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    width = 0.8 / len(outcomes)
    for index, (outcome, colour) in enumerate(outcomes.items()):
        heights = [
            sum(getattr(row, outcome) for row in report.sla if row.priority == priority)
            for priority in priorities
        ]
        positions = [i + index * width for i in range(len(priorities))]
        axes.bar(positions, heights, width, label=outcome.replace("_", " "), color=colour)
    axes.set_xticks([i + width for i in range(len(priorities))], priorities)
    _finish(figure, axes, "SLA per priority (items created in the period)", legend=True)
    return _svg(figure, "sla")


def _finish(figure: Figure, axes: Axes, title: str, *, legend: bool) -> None:
    axes.set_title(title, fontsize=10)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if legend:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()


def _svg(figure: Figure, name: str) -> str:
    out = io.StringIO()
    with _DRAWING, rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        figure.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or doctype
