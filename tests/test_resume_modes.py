"""Exact resume with random flips and DataLoader workers, from WebDataset shards, and Partial FC
resumed on another world size (slow: each test runs several ``fr fit`` processes)."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
import torch

from fr_lightning.cli import data as data_cli
from fr_lightning.tracking.resume import find_last_checkpoint
from tests.test_cli import ROOT
from tests.test_resume import STEPS, _assert_identical, _final, _fit, _fit_ddp

FLIP_WORKERS = ["--data.init_args.hflip=true", "--data.init_args.num_workers=2"]
PFC = ["--config", str(ROOT / "configs" / "scale" / "partial-fc.yaml")]


def _kill(step: int) -> str:
    return f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"


def _weights(path: Path) -> tuple[dict[str, torch.Tensor], float, int]:
    out = torch.load(path / "final.pt", weights_only=True)
    return out["weights"], out["acc"], out["step"]


@pytest.mark.slow
def test_flip_on_two_workers_sigkill_resume_equals_the_inline_run(tmp_path: Path) -> None:
    """Random flips on: a run with 2 DataLoader workers killed at a random step and resumed ends
    bit-identical to the uninterrupted run without workers (augmentation is keyed per sample)."""
    ref = tmp_path / "reference"
    ref.mkdir()
    out = _fit(ref, "--data.init_args.hflip=true", "--trainer.logger=false")
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = _final(ref)
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, STEPS - 1)
    out = _fit(run, *FLIP_WORKERS, _kill(step))
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    out = _fit(run, *FLIP_WORKERS, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc = _final(run)
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"


@pytest.mark.slow
def test_wds_run_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    """A WebDataset run (2 workers, shuffle buffer, flips) killed mid-epoch resumes bit-identically."""
    data_cli.synth(tmp_path / "rec", identities=8, per_identity=4, image_size=56, fmt="png", pairs=0)
    data_cli.main(["convert", str(tmp_path / "rec"), str(tmp_path / "wds"), "--to", "wds", "--max-count", "5"])
    wds = [
        f"--data.init_args.train={{class_path: fr_lightning.data.WdsSource, init_args: {{uri: {tmp_path / 'wds'}, shuffle_buffer: 6}}}}",
        *FLIP_WORKERS,
    ]  # 32 samples: 2 workers x 2 batches of 8 per epoch, 8 steps
    ref = tmp_path / "reference"
    ref.mkdir()
    out = _fit(ref, *wds, "--trainer.logger=false")
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc, steps = _weights(ref)
    assert steps == 8
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, steps - 1)
    out = _fit(run, *wds, _kill(step))
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    out = _fit(run, *wds, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc, got_steps = _weights(run)
    assert got_steps == steps
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"


#: Measured agreement of a Partial FC run saved on 2 gloo ranks and resumed on 1 (same global
#: batch) with the uninterrupted 2-rank run; see docs/design.md, "Checkpoints and resume".
#: Relative L2 difference of all float tensors, killed at step 2 / 3 / 4 / 5 (resumed from the
#: checkpoint one step earlier): 0.291 / 0.187 / 0.125 / 0.092, dominated by the last BatchNorm's
#: running variance; a 1-process run of the same data that did not resume: 0.568. synth-lfw
#: (40 pairs, 0.025 a pair): 0.625 / 0.700 / 0.675 / 0.650 vs 0.725; the non-resumed run 0.600.
#: Each kill step's numbers are deterministic; the bounds sit above the worst of them.
PFC_WEIGHT_RTOL = 0.35
PFC_ACC_TOL = 0.1125  # 4.5 pairs


@pytest.mark.slow
@pytest.mark.distributed
def test_partial_fc_saved_on_two_ranks_resumed_on_one_agrees_within_tolerance(tmp_path: Path) -> None:
    ref = tmp_path / "reference"
    ref.mkdir()
    out = _fit_ddp(ref, *PFC)
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = _final(ref)
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, STEPS - 1)
    _fit_ddp(run, *PFC, _kill(step))
    assert find_last_checkpoint(run / "runs" / "fr-lightning") is not None
    # One process, the same global batch (2 x 8) and data.
    one = ["--data.init_args.batch_size=16", "--data.init_args.train.init_args.num_identities=12", "--ckpt_path=last"]
    out = _fit(run, *PFC, *one)
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc = _final(run)
    assert got.keys() == weights.keys()
    num = sum(float((got[k].double() - weights[k].double()).norm() ** 2) for k in got if got[k].is_floating_point())
    den = sum(float(weights[k].double().norm() ** 2) for k in got if got[k].is_floating_point())
    rel = (num / den) ** 0.5
    print(f"partial fc 2->1 at step {step}: relative weight difference {rel:.3e}, accuracy {got_acc} vs {acc}")
    assert rel < PFC_WEIGHT_RTOL, f"killed at step {step}: relative weight difference {rel:.3e}"
    assert abs(got_acc - acc) <= PFC_ACC_TOL, f"killed at step {step}: accuracy {got_acc} vs {acc}"
