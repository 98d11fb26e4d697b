"""The error taxonomy: what went wrong decides what the daemon does next.

- :class:`ConfigError`: the operator's files are wrong; nothing starts (exit code 2).
- :class:`RetryableError`: a source or peer failed for now; try again after ``defer_s``.
- :class:`PermanentError`: a source cannot work until an operator acts (bad credentials, say).
- :class:`MessageError`: one message cannot be processed; it becomes a dead letter and its
  batch goes on.
"""

from __future__ import annotations


class InboxError(Exception):
    """The base of every error inbox-daemon raises on purpose."""


class ConfigError(InboxError):
    """A configuration file, rule or template is invalid.

    Args:
        message: what is wrong and what was expected.
        path: the file the error is in, when known.
        key: the dotted key path inside that file, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RetryableError(InboxError):
    """A failure that may pass: a dropped connection, a timeout, a rate limit.

    Args:
        message: what failed.
        defer_s: the earliest useful retry, in seconds (a rate limit's reset, say); ``None``
            lets the caller's backoff decide.
    """

    def __init__(self, message: str, *, defer_s: float | None = None) -> None:
        super().__init__(message)
        self.defer_s = defer_s


class PermanentError(InboxError):
    """A failure that repeats until an operator acts: refused credentials, a missing folder."""


class MessageError(InboxError):
    """One message cannot be processed; the message is dead-lettered, not the batch."""
