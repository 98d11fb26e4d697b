"""Rate-limit bookkeeping per X API endpoint, from the headers of every response.

X limits each endpoint per 15-minute window (``x-rate-limit-limit / -remaining / -reset``, the
reset as a Unix time) and some write endpoints per 24 hours as well
(``x-app-limit-24hour-*``, ``x-user-limit-24hour-*``). The limits differ per access tier and
change without notice, so none is written here: the book believes the headers. An endpoint
whose window is exhausted is not called again before its reset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

#: A 429 without a usable reset header blocks its endpoint this long (one standard window).
DEFAULT_BLOCK_S: Final = 15 * 60.0

# Path segments that are ids (users, tweets, "123-456" DM conversations) become ":id", so
# each endpoint has one entry whatever it was called with.
_ID_SEGMENT: Final = re.compile(r"^[0-9][0-9-]*$")
_WINDOWS: Final = ("x-rate-limit", "x-app-limit-24hour", "x-user-limit-24hour")


def endpoint_key(method: str, path: str) -> str:
    """The endpoint's name in the book: ``GET /2/users/:id/mentions``."""
    head, *rest = path.lstrip("/").split("/")  # the version ("2") is not an id
    segments = ["", head, *(":id" if _ID_SEGMENT.match(part) else part for part in rest)]
    if segments[2:5] == ["users", "by", "username"] and len(segments) > 5:
        segments[5] = ":username"
    return f"{method.upper()} {'/'.join(segments)}"


@dataclass(frozen=True, slots=True)
class Window:
    """One rate-limit window of an endpoint as the API last reported it."""

    name: str
    limit: int | None
    remaining: int
    reset_at: datetime

    def exhausted(self, now: datetime) -> bool:
        """True while no call is left and the window has not reset."""
        return self.remaining <= 0 and self.reset_at > now


class RateLimitBook:
    """The last known windows of every endpoint called through one adapter."""

    def __init__(self) -> None:
        self._windows: dict[str, dict[str, Window]] = {}

    def record(self, key: str, status: int, headers: Mapping[str, str], now: datetime) -> None:
        """Note the windows a response to ``key`` reported; a 429 exhausts its window."""
        windows = self._windows.setdefault(key, {})
        for prefix in _WINDOWS:
            window = _window(prefix, headers)
            if window is not None:
                windows[prefix] = window
        if status == 429 and not any(w.exhausted(now) for w in windows.values()):
            # A 429 whose headers leave a call, or name no reset: trust the refusal.
            current = windows.get("x-rate-limit")
            reset_at = current.reset_at if current and current.reset_at > now else None
            windows["x-rate-limit"] = Window(
                "x-rate-limit",
                current.limit if current else None,
                0,
                reset_at or now + timedelta(seconds=DEFAULT_BLOCK_S),
            )

    def blocked_until(self, key: str, now: datetime) -> datetime | None:
        """When ``key`` may be called again, or ``None`` when it may be called now."""
        resets = [w.reset_at for w in self._windows.get(key, {}).values() if w.exhausted(now)]
        return max(resets) if resets else None

    def remaining(self, key: str) -> int | None:
        """Calls left in ``key``'s 15-minute window, when known."""
        window = self._windows.get(key, {}).get("x-rate-limit")
        return window.remaining if window else None

    def snapshot(self, now: datetime) -> dict[str, dict[str, object]]:
        """Every endpoint's windows, JSON-serialisable (for logs and errors)."""
        return {
            key: {
                name: {
                    "limit": window.limit,
                    "remaining": window.remaining,
                    "reset_at": window.reset_at.isoformat(timespec="seconds"),
                    "exhausted": window.exhausted(now),
                }
                for name, window in windows.items()
            }
            for key, windows in sorted(self._windows.items())
        }


def _window(prefix: str, headers: Mapping[str, str]) -> Window | None:
    remaining = _int(headers.get(f"{prefix}-remaining"))
    reset = _int(headers.get(f"{prefix}-reset"))
    if remaining is None or reset is None:
        return None
    limit = _int(headers.get(f"{prefix}-limit"))
    return Window(prefix, limit, remaining, datetime.fromtimestamp(reset, UTC))


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
