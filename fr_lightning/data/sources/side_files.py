"""Side files: landmarks and demographic groups for real datasets whose records carry neither.

Two forms are accepted for each:

* ``.npy``: one row per training image in dataset order (RecordIO: ascending image keys, as
  ``fr data synth`` writes them; folders: the scan order, sub-folders and files sorted by name);
  landmarks ``[N, 5, 2]`` or ``[N, 10]`` float, group ``[N]`` int;
* text: one line per image, ``key x1 y1 ... x5 y5`` or ``key group``, where the key is the
  RecordIO record key or the image path relative to the folder root. Lines for images not in
  the dataset are ignored; an image without a line is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats.text import text_lines

__all__ = ["load_side_file", "resolve_path", "side_data"]


def load_side_file(
    path: str | Path, keys: Sequence[Any] | np.ndarray, kind: Literal["landmarks", "group"], what: str
) -> np.ndarray:
    """Read a landmarks or group side file and return one row per key (dataset order).

    Args:
        path: ``.npy`` (rows in dataset order) or text (``key value...`` lines).
        keys: The dataset's image keys (record keys or relative paths), in dataset order.
        kind: ``landmarks`` (returns float32 ``[N, 5, 2]``) or ``group`` (returns int64 ``[N]``).
        what: Names the dataset in error messages.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFormatError: Wrong shape, a malformed line, or an image without a value (the message
            names the file and the line or key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} side file not found: {path}")
    n = len(keys)
    width = 10 if kind == "landmarks" else 1
    if path.suffix == ".npy":
        arr = _load_npy(path)
        ok = arr.shape[:1] == (n,) and (
            (kind == "landmarks" and arr.shape[1:] in ((5, 2), (10,))) or (kind == "group" and arr.ndim == 1)
        )
        if not ok:
            want = f"({n}, 5, 2)" if kind == "landmarks" else f"({n},)"
            raise DataFormatError(
                f"{path}: {kind} array has shape {arr.shape}, expected {want}: one row per image of {what}, "
                "in dataset order"
            )
        values = arr.reshape(n, width)
    else:
        table: dict[str, list[str]] = {}
        for lineno, line in text_lines(path):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.rsplit(maxsplit=width)
            if len(fields) != width + 1:
                raise DataFormatError(
                    f"{path}, line {lineno}: expected 'key' and {width} value(s), got {line[:80]!r}"
                )
            table[fields[0]] = fields[1:]
        rows = []
        for key in keys:
            k = str(key)
            if k not in table:
                missing = sum(str(x) not in table for x in keys)
                raise DataFormatError(f"{path}: no {kind} for image {k!r} of {what} ({missing} of {n} images missing)")
            rows.append(table[k])
        try:
            values = np.array(rows, dtype=np.float64).reshape(n, width)
        except ValueError as exc:
            raise DataFormatError(f"{path}: non-numeric {kind} value: {exc}") from None
    if kind == "group":
        values = values.astype(np.float64)
        if not np.isfinite(values).all() or (values != np.round(values)).any() or (values < 0).any() or (values >= 2**31).any():
            raise DataFormatError(f"{path}: group values must be integers in [0, 2**31)")
        return values.reshape(n).astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.reshape(n, 5, 2).astype(np.float32)
    if not np.isfinite(out).all():  # NaN/inf in the file, or beyond float32's range
        raise DataFormatError(f"{path}: {kind} holds NaN, infinite or out-of-range values")
    return out


def _load_npy(path: Path) -> np.ndarray:
    """A plain numeric ``.npy`` array; its header is checked against the file size before anything is allocated."""
    from numpy.lib import format as npy_format

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            # The header's length field comes first; numpy would read that many bytes unchecked.
            width = 2 if version == (1, 0) else 4
            raw = f.read(width)
            header_len = int.from_bytes(raw, "little") if len(raw) == width else size
            if f.tell() + header_len > size:
                raise DataFormatError(f"{path}: .npy header of {header_len} bytes runs past the end of the file ({size} bytes)")
            f.seek(-width, 1)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            data_start = f.tell()
        if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None:
            raise DataFormatError(f"{path}: .npy dtype {dtype} is not a plain number type")
        count = 1
        for dim in shape:
            count *= int(dim)
        if data_start + count * dtype.itemsize > size:
            raise DataFormatError(
                f"{path}: .npy header announces shape {shape} ({count * dtype.itemsize} bytes of {dtype}) "
                f"but the file holds {size - data_start} data bytes; truncated?"
            )
        return np.load(path, allow_pickle=False)
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError...
        raise DataFormatError(f"{path}: not a plain numeric .npy array: {exc}") from None


def resolve_path(root: Path, name: str | None) -> Path | None:
    """A side/list file path: absolute as given, relative ones looked up in ``root`` (then the working dir)."""
    if name is None:
        return None
    p = Path(name)
    if p.is_absolute():
        return p
    # Relative side files live next to the data; fall back to the working directory.
    return p if not (root / p).exists() and p.exists() else root / p


def side_data(
    root: Path, landmarks: str | None, group: str | None, keys: Sequence[Any] | np.ndarray, what: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The landmarks and group arrays a source's ``landmarks:`` / ``group:`` options name (None when unset)."""
    lm_path, grp_path = resolve_path(root, landmarks), resolve_path(root, group)
    lm = None if lm_path is None else load_side_file(lm_path, keys, "landmarks", what)
    grp = None if grp_path is None else load_side_file(grp_path, keys, "group", what)
    return lm, grp
