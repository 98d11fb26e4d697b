"""The e-mail channel: IMAP mailboxes in (aioimaplib), SMTP replies out (aiosmtplib)."""

from __future__ import annotations
