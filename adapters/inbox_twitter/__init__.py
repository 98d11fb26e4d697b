"""The X (Twitter) channel: mentions, direct messages and saved searches in; replies and DMs out."""

from __future__ import annotations
