"""Fault tolerance: exact resume after SIGKILL and SIGTERM, atomic checkpoints, the lost final validation."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from fr_lightning.cli import cli_main
from fr_lightning.tracking import EXIT_PREEMPTED, read_offline_run
from fr_lightning.tracking.checkpointing import AtomicCheckpointIO
from fr_lightning.tracking.resume import checkpoint_is_valid, checkpoint_run_id, find_last_checkpoint
from tests.test_cli import ARCFACE, ROOT

STEPS = 6  # 2 epochs x 3 batches
RUN = [
    "--config", str(ARCFACE),
    "--model.init_args.backbone.init_args.width=0.125",
    "--data.init_args.train.init_args.num_identities=6",
    "--data.init_args.train.init_args.samples_per_identity=4",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
    "--data.init_args.hflip=false",
    "--data.init_args.val_sets=[{class_path: fr_lightning.data.SyntheticPairs, init_args: {name: synth-lfw, pairs: 40}}]",
    "--trainer.max_epochs=2",
    "--trainer.check_val_every_n_epoch=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint.every_n_train_steps=1",
    "--trainer.callbacks+={class_path: tests.test_resume.GradNoise}",
]  # fmt: skip


class GradNoise(pl.Callback):
    """Adds noise drawn from torch, NumPy and Python's RNGs to every gradient, so the weights
    depend on every global RNG stream being restored exactly."""

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: object) -> None:
        scale = 1e-3 * (1.0 + np.random.rand() + random.random())
        for p in pl_module.parameters():
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:  # Partial FC's row-sparse centre gradient (no normal_ kernel for SparseCPU)
                grad = grad._values()
            grad.add_(scale * torch.randn_like(grad))


class KillAt(pl.Callback):
    """Sends ``sig`` to this process at the end of training step ``step`` (before it is checkpointed)."""

    def __init__(self, step: int, sig: int = 9) -> None:
        self.step, self.sig = step, sig

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


class SaveWeights(pl.Callback):
    """Writes the final weights and synth-lfw accuracy to ``path`` (runs in a subprocess)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        acc = float(trainer.callback_metrics.get("val/synth-lfw/acc", float("nan")))
        weights = pl_module.state_dict()  # on every rank: Partial FC gathers its sharded centres here
        if trainer.is_global_zero:
            torch.save({"weights": weights, "acc": acc, "step": trainer.global_step}, self.path)


class FailOnValidation(pl.Callback):
    """Dies at the start of the first validation (the final one in these runs)."""

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("killed during the final validation")


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    env.pop("FR_RUN_ID", None)
    return env


def _fit(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    """``fr fit`` in a fresh process (every run of a comparison runs the same way: same threads,
    same kernels), saving its final weights to ``cwd/final.pt``."""
    save = f"--trainer.callbacks+={{class_path: tests.test_resume.SaveWeights, init_args: {{path: {cwd / 'final.pt'}}}}}"
    code = "import sys, torch; torch.set_num_threads(2); from fr_lightning.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, "fit", *RUN, save, *extra], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def _fit_ddp(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    """:func:`_fit` on 2 gloo processes, started as ``python -m fr_lightning.cli`` (Lightning's
    launcher re-runs that command line for rank 1, which ``python -c`` cannot provide)."""
    save = f"--trainer.callbacks+={{class_path: tests.test_resume.SaveWeights, init_args: {{path: {cwd / 'final.pt'}}}}}"
    ddp = ["--config", str(ROOT / "configs" / "scale" / "cpu-ddp2.yaml")]
    ddp.append("--data.init_args.train.init_args.num_identities=12")  # twice the data: 3 batches per rank and epoch
    cmd = [sys.executable, "-m", "fr_lightning.cli", "fit", *RUN, save, *ddp, *extra]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def _final(cwd: Path) -> tuple[dict[str, torch.Tensor], float]:
    out = torch.load(cwd / "final.pt", weights_only=True)
    assert out["step"] == STEPS
    return out["weights"], out["acc"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], float]:
    """The uninterrupted run: final weights and synth-lfw accuracy."""
    cwd = tmp_path_factory.mktemp("reference")
    out = _fit(cwd, "--trainer.logger=false")
    assert out.returncode == 0, out.stderr[-2000:]
    return _final(cwd)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path: Path, reference) -> None:  # noqa: ANN001
    step = random.Random().randint(2, STEPS - 1)  # step 1 is killed before any checkpoint exists
    kill = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"
    out = _fit(tmp_path, kill)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    last = find_last_checkpoint(tmp_path / "runs" / "fr-lightning")
    assert last is not None and checkpoint_run_id(last) == run_dir.name
    out = _fit(tmp_path, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = reference
    got, got_acc = _final(tmp_path)
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"
    # The resumed run continued the killed run's W&B run and folder.
    assert [p.name for p in (tmp_path / "runs" / "fr-lightning").iterdir()] == [run_dir.name]
    # W&B names each process's folder offline-run-<time>-<run id>; the killed process may die
    # before its service writes the run record, so its id is read from the folder name, and
    # the resumed process's from its (complete) record.
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert {r.name.rsplit("-", 1)[-1] for r in runs} == {run_dir.name}
    assert read_offline_run(runs[-1]).run_id == run_dir.name


@pytest.mark.slow
@pytest.mark.distributed
def test_sigkill_then_resume_is_bit_identical_under_two_process_ddp(tmp_path: Path) -> None:
    """The same under 2-process gloo DDP: both ranks die at the step, resume from ``last``."""
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    out = _fit_ddp(ref_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = _final(ref_dir)
    run = tmp_path / "killed"
    run.mkdir()
    step = random.Random().randint(2, STEPS - 1)
    kill = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: {step}}}}}"
    _fit_ddp(run, kill)
    assert find_last_checkpoint(run / "runs" / "fr-lightning") is not None
    out = _fit_ddp(run, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    got, got_acc = _final(run)
    _assert_identical(got, weights)
    assert got_acc == acc, f"killed at step {step}"


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_99_and_resumes_exactly(tmp_path: Path, reference) -> None:  # noqa: ANN001
    term = f"--trainer.callbacks+={{class_path: tests.test_resume.KillAt, init_args: {{step: 4, sig: {int(signal.SIGTERM)}}}}}"
    no_steps = "--checkpoint.every_n_train_steps=100"  # only the SIGTERM checkpoint exists
    out = _fit(tmp_path, no_steps, term)
    assert out.returncode == EXIT_PREEMPTED, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4
    wandb_run = read_offline_run(next((tmp_path / "runs" / "wandb").glob("offline-run-*")))
    assert wandb_run.exit_code == EXIT_PREEMPTED
    out = _fit(tmp_path, no_steps, "--ckpt_path=last")
    assert out.returncode == 0, out.stderr[-2000:]
    weights, acc = reference
    got, got_acc = _final(tmp_path)
    _assert_identical(got, weights)
    assert got_acc == acc


@pytest.mark.slow
def test_run_killed_in_final_validation_validates_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_epoch = ["--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1"]
    fail = "--trainer.callbacks+={class_path: tests.test_resume.FailOnValidation}"
    with pytest.raises(RuntimeError, match="final validation"):
        cli_main(["fit", *RUN, *one_epoch, fail])
    (run_dir,) = (tmp_path / "runs" / "fr-lightning").iterdir()
    assert not (run_dir / "verification.json").exists()
    cli = cli_main(["fit", *RUN, *one_epoch, "--ckpt_path=last"])
    assert "val/synth-lfw/acc" in cli.trainer.callback_metrics
    assert "synth-lfw" in json.loads((run_dir / "verification.json").read_text())


_KILL_DURING_SAVE = """
import os, signal, sys, torch
from fr_lightning.tracking.checkpointing import AtomicCheckpointIO
path = sys.argv[1]
AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
real = torch.save
def torn(obj, f, *a, **k):
    f.write(b"PK partial checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = torn
AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
"""


def test_kill_during_checkpoint_write_leaves_last_loadable(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    out = subprocess.run([sys.executable, "-c", _KILL_DURING_SAVE, str(last)], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert torch.load(last, weights_only=True)["step"] == 1
    assert checkpoint_is_valid(last)
    leftovers = [p.name for p in last.parent.iterdir() if p != last]
    assert leftovers and all(name.startswith(".last.ckpt.tmp-") for name in leftovers)
    # A torn file under a checkpoint name is skipped when looking for the newest valid one.
    (last.parent / "step0000009.ckpt").write_bytes(b"PK torn")
    assert find_last_checkpoint(tmp_path.parent, tmp_path.name) == last


def test_atomic_io_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint({"x": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]
