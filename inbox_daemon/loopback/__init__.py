"""Real mail servers on loopback (pymap for IMAP, aiosmtpd for SMTP) for the demo and the tests."""

from __future__ import annotations
