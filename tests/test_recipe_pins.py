"""Behaviour pins: two shipped recipes, trained at a tiny size with seed 0, give the recorded numbers.

``recipes/arcface.yaml`` (the baseline) and ``recipes/coteaching.yaml`` (two networks, scoring
pass, sample selection) each run 8 optimizer steps on 8 synthetic identities × 4 images (batch 8,
2 epochs, random flips off, so the pins do not depend on how augmentation is seeded) and one
validation on 40 synth-lfw pairs. The final training loss, the validation accuracy and sums over
every parameter of the module (the co-teaching peer included) must equal the values pinned below,
recorded at the commit named in ``RECORDED_AT``. A refactor that changes what training computes
moves them far beyond the tolerance, which only absorbs float rounding between CPU kernels.

If a change is *meant* to alter training, re-record: ``python tests/test_recipe_pins.py`` prints
the new values; say why in the commit.

Both fits run in one fresh subprocess with one thread, so nothing earlier in the test session
(thread count, kernel caches) can change their arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("arcface", "coteaching")
TINY = [
    "--trainer.max_epochs=2",
    "--trainer.check_val_every_n_epoch=2",
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
    "--data.init_args.hflip=false",
    "--data.init_args.train.init_args.num_identities=8",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, "
    "init_args: {name: synth-lfw, kind: standard, pairs: 40, set_seed: 0}}]",
    "--seed_everything=0",
]
RECORDED_AT = "8852879"  # after 4807c09 (per-sample augmentation keys); three runs gave these values bit for bit
#: recipe -> pinned values (see the module docstring).
PINS: dict[str, dict[str, float]] = {
    "arcface": {
        "steps": 8.0,
        "train/loss": 16.265758514404297,
        "val/synth-lfw/acc": 0.699999988079071,
        "params/sum": 1960.69967930429,
        "params/abs_sum": 71028.16560885905,
        "params/sq_sum": 11212.347788632565,
    },
    "coteaching": {
        "steps": 8.0,
        "train/loss": 44.3462028503418,
        "val/synth-lfw/acc": 0.574999988079071,
        "params/sum": 3688.5145577585786,
        "params/abs_sum": 164975.47223933382,
        "params/sq_sum": 32939.05420925592,
    },
}

_RUNNER = """
import json, os, sys
import torch
torch.set_num_threads(1)
from fr_lightning.cli import cli_main
out = {}
for recipe in json.loads(sys.argv[1]):
    work = os.path.join(sys.argv[3], recipe)
    os.makedirs(work)
    os.chdir(work)
    cli = cli_main(["fit", "--config", os.path.join(sys.argv[4], "recipes", recipe + ".yaml"), *json.loads(sys.argv[2])])
    m = cli.trainer.callback_metrics
    weights = [p.detach().double() for p in cli.model.parameters()]
    out[recipe] = {
        "steps": float(cli.trainer.global_step),
        "train/loss": float(m["train/loss"]),
        "val/synth-lfw/acc": float(m["val/synth-lfw/acc"]),
        "params/sum": float(sum(w.sum() for w in weights)),
        "params/abs_sum": float(sum(w.abs().sum() for w in weights)),
        "params/sq_sum": float(sum(w.square().sum() for w in weights)),
    }
print("@@PINS@@" + json.dumps(out))
"""


def measure(tmp: Path) -> dict[str, dict[str, float]]:
    """Train every recipe of ``RECIPES`` at the tiny size in a fresh one-thread process; its numbers."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(RECIPES), json.dumps(TINY), str(tmp), str(ROOT)],
        capture_output=True, text=True, env=env, cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@PINS@@"))
    return json.loads(line[len("@@PINS@@"):])


@pytest.mark.slow  # two recipe fits in a subprocess
def test_two_recipes_give_the_pinned_numbers_at_seed_0(tmp_path: Path) -> None:
    got = measure(tmp_path)
    assert set(got) == set(PINS) == set(RECIPES)
    for recipe, pinned in PINS.items():
        assert got[recipe]["steps"] == pinned["steps"] == 8.0
        assert got[recipe]["val/synth-lfw/acc"] == pytest.approx(pinned["val/synth-lfw/acc"], abs=1e-9), recipe
        for key in ("train/loss", "params/sum", "params/abs_sum", "params/sq_sum"):
            assert got[recipe][key] == pytest.approx(pinned[key], rel=1e-5, abs=1e-6), f"{recipe}: {key} changed"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))
