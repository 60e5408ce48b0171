"""Errors raised for malformed input files."""

from __future__ import annotations

__all__ = ["DataFormatError"]


class DataFormatError(ValueError):
    """A data file on disk is malformed, truncated or unsafe to read.

    The message always names the file and, where one applies, the record key,
    byte offset or item index, so the user can find the bad spot.
    """
