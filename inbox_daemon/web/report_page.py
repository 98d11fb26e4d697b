"""The retrospective report as one HTML page: for ``inbox-daemon report`` and ``/report``.

The page stands alone: styles and charts (inline SVG) are in it and it runs no script, so
it reads the same from a file or from the server. The server sends it with a policy of its
own that allows inline styles and nothing else (no script, nothing fetched).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..report import Report, build_report, write_csv_files
from ..report_charts import draw_charts
from .context import engine_of
from .errors import invalid

#: The report's own Content-Security-Policy: inline styles and images, nothing else.
REPORT_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: The period ``/report`` covers unless ``since`` says otherwise.
DEFAULT_SINCE: Final = "7d"
_UNITS: Final = {"d": "days", "h": "hours", "m": "minutes"}

_ENVIRONMENT: Final = Environment(
    loader=PackageLoader("inbox_daemon.web", "templates"),
    autoescape=select_autoescape(default=True),
)


def render_report(report: Report) -> str:
    """The report's HTML page (charts drawn here: CPU work, call it off the event loop)."""
    charts = {name: Markup(svg) for name, svg in draw_charts(report).items()}  # noqa: S704 - matplotlib's own SVG
    return _ENVIRONMENT.get_template("report.html").render(report=report, charts=charts)


def write_report(report: Report, folder: Path) -> list[Path]:
    """Write ``report.html`` and the CSV files into ``folder`` (made if need be)."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    page.write_text(render_report(report), encoding="utf-8")
    return [page, *write_csv_files(report, folder)]


def period(text: str) -> timedelta:
    """``7d``, ``48h`` or ``30m`` as a duration.

    Raises:
        ValueError: not a positive number followed by d, h or m.
    """
    unit = _UNITS.get(text[-1:]) if text else None
    amount = float(text[:-1]) if unit and text[:-1].replace(".", "", 1).isdigit() else 0.0
    if unit is None or amount <= 0:
        raise ValueError(f"{text!r}: expected a number and d, h or m, e.g. 7d")
    return timedelta(**{unit: amount})


def add_routes(app: web.Application) -> None:
    """Register ``GET /report`` (signed-in agents only, like the API)."""
    app.router.add_get("/report", report_page)


async def report_page(request: web.Request) -> web.Response:
    """``GET /report?since=7d``: the report of the period that ends now."""
    unknown = set(request.query) - {"since"}
    if unknown:
        raise invalid("unknown parameter; expected since", field=sorted(unknown)[0])
    try:
        span = period(request.query.get("since", DEFAULT_SINCE))
    except ValueError as exc:
        raise invalid(str(exc), field="since") from exc
    until = datetime.now(UTC)
    report = await build_report(engine_of(request), since=until - span, until=until)
    page = await asyncio.to_thread(render_report, report)
    response = web.Response(text=page, content_type="text/html")
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response
