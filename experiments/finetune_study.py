"""Fine-tuning a pre-trained backbone on few images of new identities, against training from scratch.

    python -m experiments.finetune_study            # the reported study (claim `finetune` in experiments/claims.py)
    python -m experiments.finetune_study --quick    # smoke run: tiny data, seconds, not reported

1. **The published model.** ``recipes/arcface.yaml``'s network trained once on its own draw of
   identities (renderer seed :data:`PRETRAIN_SEED`, 600 identities × 20 images, 4 epochs), like
   a backbone a user downloads. Its checkpoint stays in the study's work folder.
2. **The user's data**, per study seed ``s``: 200 new identities × 5 images (renderer seed ``s``:
   other faces than the pre-training draw), and synth-lfw pairs of other held-out identities
   drawn with ``s`` (:mod:`experiments.seeds`).
3. **Two variants, same data, steps and schedule**: ``scratch`` (random initialisation) and
   ``finetune`` (``--model.init_args.init_from`` the published checkpoint — its classifier has
   600 rows, so a new one is initialised — with the backbone's learning rate scaled by 0.1).

Run files go to ``experiments/out/v2/finetune/``; ``python -m experiments.report`` computes the
verdict.
"""

from __future__ import annotations

import time
from typing import Any

from experiments.claims import CLAIMS
from experiments.preset_study import flow
from experiments.seeds import data_seed_args
from experiments.study import ROOT, fit_recorded, record_command_wall, require_committed, run_study, work_dir
from experiments.study_cli import study_parser, study_plan

#: renderer seed of the pre-training draw (no study seed uses it)
PRETRAIN_SEED = 7000
RECIPE = ROOT / "recipes" / "arcface.yaml"


def budget(identities: int, per_identity: int, epochs: int, batch_size: int, pairs: int) -> tuple[list[str], dict[str, Any]]:
    """``fr fit`` overrides of a budget and the data section the seeds draw from."""
    val = [{"class_path": "fr_lightning.data.SyntheticPairs", "init_args": {"name": "synth-lfw", "kind": "standard", "pairs": pairs, "set_seed": 0}}]
    train = {"class_path": "fr_lightning.data.SyntheticSource", "init_args": {"num_identities": identities, "samples_per_identity": per_identity}}
    args = [
        "--config", str(RECIPE),
        f"--data.init_args.train={flow(train)}",
        f"--data.init_args.batch_size={batch_size}",
        "--data.init_args.num_workers=0",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={epochs}",
    ]
    return args, {"init_args": {"train": train, "val_sets": val}}


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    start = time.time()
    args = study_parser(__doc__).parse_args(argv)
    claim = CLAIMS["finetune"]
    plan = study_plan(claim, args)
    seeds, tag = plan.seeds, plan.tag
    folder = args.out_dir / (claim.name + (f"-{tag}" if tag else ""))
    if not tag:
        require_committed(claim)  # the pre-training run belongs to the study too

    pre_args, pre_data = budget(*((12, 4, 1, 16, 40) if args.quick else (600, 20, 4, 128, 1000)))
    pre_args += ["--checkpoint.save_last=true", "--checkpoint.save_top_k=0", "--checkpoint.dirpath=published"]
    pre_args += data_seed_args(pre_data, PRETRAIN_SEED)
    fit_recorded(claim, "pretrain", pre_args, PRETRAIN_SEED, folder)
    published = work_dir(claim, "pretrain", pre_args, PRETRAIN_SEED, folder) / "published" / "last.ckpt"
    if not published.is_file():
        raise SystemExit(f"the pre-training run left no checkpoint at {published}; delete its run file under {folder / 'runs'} and rerun")

    user_args, user_data = budget(*((6, 3, 2, 9, 40) if args.quick else (200, 5, 10, 64, 1000)))
    user_args.append("--trainer.enable_checkpointing=false")
    variants = {
        "scratch": user_args,
        "finetune": [*user_args, f"--model.init_args.init_from={published}", "--model.init_args.backbone_lr_scale=0.1"],
    }
    results = run_study(claim, variants, seeds, lambda _args, seed: data_seed_args(user_data, seed), plan.command, args.out_dir, tag, jobs=plan.jobs)
    record_command_wall(folder, time.time() - start)  # the pre-training run included
    return results


if __name__ == "__main__":
    main()
