"""What every v2 study command shares: its options, which seeds it runs and where, and its budget overrides."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.preset_study import flow
from experiments.protocol import Claim
from experiments.seeds import CALIBRATION_SEEDS
from experiments.study import OUT_V2


def study_parser(doc: str | None, quick_help: str = "smoke run: tiny data, one calibration seed, seconds") -> argparse.ArgumentParser:
    """A parser with ``--seeds``, ``--quick``, ``--out-dir`` and ``--jobs``; a study adds its own options."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the claim's reported seeds")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out-dir", type=Path, default=OUT_V2)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (2: both cores of the 2-core machine)")
    return parser


@dataclass(frozen=True)
class Plan:
    """Which seeds a study command runs, the folder tag, the command that reproduces it, runs at a time."""

    seeds: list[int]
    tag: str
    command: str
    jobs: int


def study_plan(claim: Claim, args: argparse.Namespace, options: str = "") -> Plan:
    """The plan of ``claim``'s study for parsed ``args``.

    The claim's reported seeds by default; one calibration seed with ``--quick`` (tag ``quick``,
    one job); any seed outside the reported ones makes the run ``unreported`` (its own folder).
    ``options`` are the study's own options, repeated in the stored command.
    """
    seeds = args.seeds or ([CALIBRATION_SEEDS[0]] if args.quick else list(claim.seeds))
    tag = "quick" if args.quick else ("" if set(seeds) <= set(claim.seeds) else "unreported")
    command = claim.command + (f" {options}" if options else "") + (" --quick" if args.quick else "")
    command += f" --seeds {' '.join(map(str, seeds))}" if args.seeds else ""
    return Plan(seeds, tag, command, 1 if args.quick else args.jobs)


def budget_overrides(
    train: Mapping[str, Any],
    val_sets: Sequence[Mapping[str, Any]],
    batch_size: int,
    image_size: int,
    epochs: int,
    val_every: int | None = None,
    checkpoints: bool = False,
) -> list[str]:
    """``fr fit`` overrides of a study budget: training source, verification sets, batch size, image size
    (the backbone's input size follows), epochs, validation cadence; no loader workers; no checkpoints
    unless ``checkpoints``."""
    args = [
        f"--data.init_args.train={flow(dict(train))}",
        f"--data.init_args.val_sets={flow([dict(v) for v in val_sets])}",
        f"--data.init_args.batch_size={batch_size}",
        f"--data.init_args.image_size={image_size}",
        f"--model.init_args.backbone.init_args.input_size={image_size}",
        "--data.init_args.num_workers=0",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={val_every or epochs}",
    ]
    return args if checkpoints else [*args, "--trainer.enable_checkpointing=false"]


def synthetic_train(identities: int, per_identity: int, preset: str | None = None) -> dict[str, Any]:
    """A ``SyntheticSource`` entry of ``data.init_args.train`` (``preset`` only when given)."""
    init: dict[str, Any] = {"num_identities": identities, "samples_per_identity": per_identity}
    if preset is not None:
        init["preset"] = preset
    return {"class_path": "fr_lightning.data.SyntheticSource", "init_args": init}
