"""Read an offline W&B run file (``run-<id>.wandb``): config, summary, history and exit code.

The file is W&B's transaction log: a ``:W&B`` header, then LevelDB-log records (32 KiB blocks,
each record a 7-byte header ``crc32 | length (u16) | type`` and a chunk; types FULL=1,
FIRST=2, MIDDLE=3, LAST=4) whose payloads are ``wandb_internal.proto`` ``Record`` messages.
It is what ``wandb sync`` uploads, so tests read it to check what a synced run will show.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OfflineRun", "read_offline_run"]

_BLOCK = 32768
_HEADER = 7


@dataclass
class OfflineRun:
    """What an offline run file holds (the parts tests and users look at)."""

    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None


def _records(data: bytes) -> list[bytes]:
    if not data.startswith(b":W&B"):
        raise ValueError("not a W&B run file (no ':W&B' header)")
    out, pos, partial = [], _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == 0 and length == 0:
            break
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            partial = chunk
        elif kind == 3:
            partial += chunk
        elif kind == 4:
            out.append(partial + chunk)
            partial = b""
    return out


def _config_items(items: Any, into: dict[str, Any]) -> None:
    for item in items:
        key = item.key or "/".join(item.nested_key)
        into[key] = json.loads(item.value_json)


def read_offline_run(path: str | Path) -> OfflineRun:
    """Parse ``path`` (a ``run-<id>.wandb`` file, or the ``offline-run-*`` folder holding one)."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise FileNotFoundError(f"no run-*.wandb file in {path}")
        path = files[0]
    run = OfflineRun()
    for raw in _records(path.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name, run.group, run.job_type = rec.run.run_id, rec.run.display_name, rec.run.run_group, rec.run.job_type
            run.tags = list(rec.run.tags)
            _config_items(rec.run.config.update, run.config)
        elif kind == "config":
            _config_items(rec.config.update, run.config)
            for item in rec.config.remove:
                run.config.pop(item.key, None)
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item})
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run
