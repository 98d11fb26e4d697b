"""Human-quotable references for feedback records: ``FB-7K2Q-9MXA``."""

from __future__ import annotations

import secrets
from typing import Final

# Crockford's base32: no I, L, O or U, so a reference read over the phone is unambiguous.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    """A fresh random reference (40 bits: collisions are caught by a unique index)."""
    bits = int.from_bytes(secrets.token_bytes(5))
    chars = "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"FB-{chars[:4]}-{chars[4:]}"
