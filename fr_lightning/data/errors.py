"""Errors raised for malformed input files."""

from __future__ import annotations

import math

__all__ = ["DataFormatError", "check_label"]


class DataFormatError(ValueError):
    """A data file on disk is malformed, truncated or unsafe to read.

    The message always names the file and, where one applies, the record key,
    byte offset or item index, so the user can find the bad spot.
    """


def check_label(label: float, num_classes: int, where: str, hint: str = "") -> int:
    """``label`` as an int, or a :class:`DataFormatError` naming ``where`` when it is not an integer in ``[0, num_classes)``.

    Args:
        label: the label as stored (RecordIO keeps it as a float).
        num_classes: valid labels are ``[0, num_classes)``.
        where: the record or file, for the message.
        hint: appended to the message (e.g. which file sets ``num_classes``).
    """
    value = float(label)
    if not (math.isfinite(value) and value.is_integer() and 0 <= value < num_classes):
        raise DataFormatError(f"{where} has label {label}, outside [0, {num_classes}) (num_classes={num_classes}){hint}")
    return int(value)
