"""Wording shared by error messages."""

__all__ = ["indefinite"]


def indefinite(noun: str) -> str:
    """``noun`` with its indefinite article: "a SyncThrottle", "an AsyncThrottle"."""
    return f"an {noun}" if noun[:1].upper() in "AEIOU" else f"a {noun}"
