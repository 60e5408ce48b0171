"""Verification reports: the deployment threshold, ``verification.json`` and the W&B table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fr_lightning.data.errors import DataFormatError
from fr_lightning.utils.atomic import write_json_atomic

__all__ = ["TABLE_COLUMNS", "best_cosine_threshold", "read_json", "read_verification_json", "table_rows", "write_verification_json"]

#: TAR@FAR keys reported in ``verification.json`` and the W&B table.
TAR_KEYS: tuple[str, ...] = ("tar@far=1e-4", "tar@far=1e-3", "tar@far=1e-2")
#: Columns of the per-set verification table.
TABLE_COLUMNS: list[str] = ["set", "acc (%)", "acc_std (%)", "acc ± std", *[f"{k} (%)" for k in TAR_KEYS], "auc", "threshold (cos)"]


def best_cosine_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    """The cosine-similarity threshold with the best accuracy over all pairs ("same" iff ``cos >= t``).

    Candidates lie midway between consecutive distinct scores (plus one above the highest and
    one below the lowest), so the threshold never sits on a score; the first best wins.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    same = np.asarray(issame, dtype=bool).reshape(-1)
    if s.size == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, same = s[order], same[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each tie run
    n_diff = int((~same).sum())
    tp = np.r_[0, np.cumsum(same)[ends]]
    fp = np.r_[0, np.cumsum(~same)[ends]]
    correct = tp + (n_diff - fp)  # accept the top runs 0..k
    k = int(np.argmax(correct))
    distinct = s[ends]
    if k == 0:
        return float(np.nextafter(distinct[0], np.inf))
    if k == len(distinct):
        return float(np.nextafter(distinct[-1], -np.inf))
    return float((distinct[k - 1] + distinct[k]) / 2.0)


def set_report(metrics: Mapping[str, float], threshold: float) -> dict[str, float]:
    """One set's entry of ``verification.json``: accuracies and TARs in %, AUC in [0, 1]."""
    out = {"acc": 100.0 * float(metrics["acc"]), "acc_std": 100.0 * float(metrics["acc_std"]), "threshold": float(threshold)}
    for key in TAR_KEYS:
        if key in metrics:
            out[key] = 100.0 * float(metrics[key])
    if "auc" in metrics:
        out["auc"] = float(metrics["auc"])
    return out


def write_verification_json(path: str | Path, reports: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``{"<set>": {"acc", "acc_std", "threshold", "tar@far=...", "auc"}}`` atomically
    (every top-level key is a set name)."""
    return write_json_atomic(path, {name: dict(r) for name, r in reports.items()})


def table_rows(reports: Mapping[str, Mapping[str, float]]) -> list[list[Any]]:
    """Rows of the W&B verification table (columns :data:`TABLE_COLUMNS`)."""
    rows = []
    for name, r in reports.items():
        rows.append(
            [name, r["acc"], r["acc_std"], f"{r['acc']:.2f} ± {r['acc_std']:.2f}"]
            + [r.get(k, float("nan")) for k in TAR_KEYS]
            + [r.get("auc", float("nan")), r["threshold"]]
        )
    return rows


def read_json(path: Path) -> Any:
    """A UTF-8 JSON file's content; bytes that are not UTF-8, bad JSON or too deep nesting raise naming the file."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DataFormatError(f"{path}: JSON nested too deeply") from None


def read_verification_json(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a ``verification.json`` back: ``{"<set>": {"acc": ..., "threshold": ..., ...}}``.

    Every set must hold finite numbers for ``acc``, ``acc_std`` and ``threshold`` (a cosine in
    [-1, 1]); other numeric keys are kept, NaN allowed (a TAR that was not reached).

    Raises:
        FileNotFoundError: No such file.
        DataFormatError: Not UTF-8 JSON of that shape (the message names the file and the key).
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataFormatError(f'{path}: expected {{"<set>": {{"acc": ..., "threshold": ...}}}}, got {type(data).__name__}')
    out: dict[str, dict[str, float]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise DataFormatError(f"{path}: set {name!r} is a {type(entry).__name__}, expected an object")
        values: dict[str, float] = {}
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataFormatError(f"{path}: '{name}.{key}' is {str(value)[:40]!r}, expected a number")
            try:
                values[key] = float(value)
            except OverflowError:  # a JSON integer beyond float range
                raise DataFormatError(f"{path}: '{name}.{key}' is out of range") from None
        for key in ("acc", "acc_std", "threshold"):
            if key not in values or not math.isfinite(values[key]):
                raise DataFormatError(f"{path}: '{name}.{key}' is missing or not a finite number")
        if not -1.0 <= values["threshold"] <= 1.0:
            raise DataFormatError(f"{path}: '{name}.threshold' is {values['threshold']}, not a cosine in [-1, 1]")
        out[name] = values
    return out
