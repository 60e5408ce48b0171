"""Resuming runs: the newest valid checkpoint of a run, its W&B id, RNG state, the final validation
and checkpoints on preemption (SIGTERM; SLURM's SIGUSR1 is Lightning's requeue signal)."""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fr_lightning.utils.rundir import run_dir

__all__ = ["ResumeState", "checkpoint_is_valid", "checkpoint_run_id", "checkpoint_run_naming", "find_last_checkpoint", "get_rng_state", "set_rng_state"]

#: ``--ckpt_path`` values that mean "the newest valid checkpoint of this run".
AUTO_VALUES = ("last", "auto")


def checkpoint_is_valid(path: Path) -> bool:
    """True when ``path`` is a complete torch zip archive (every member's CRC checks out)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _resume_state(path: Path) -> dict[str, Any]:
    """The :class:`ResumeState` entry of a checkpoint ({} when unreadable or absent)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable or foreign checkpoint simply has no state
        return {}
    state = next((v for k, v in ckpt.get("callbacks", {}).items() if str(k).startswith("ResumeState")), None)
    return state if isinstance(state, dict) else {}


def checkpoint_run_id(path: Path) -> str | None:
    """The W&B run id stored in a checkpoint by :class:`ResumeState` (None when absent)."""
    run_id = _resume_state(path).get("wandb_id")
    return str(run_id) if run_id else None


def checkpoint_run_naming(path: Path) -> dict[str, str]:
    """W&B ``name`` and ``group`` of the fit run that wrote a checkpoint ({} for older or foreign ones).

    Evaluation commands (``fr eval ijb|tinyface``) open their runs under the same name and group,
    so they sit next to the training run in the W&B UI.
    """
    state = _resume_state(path)
    return {k: str(state[f"wandb_{k}"]) for k in ("name", "group") if state.get(f"wandb_{k}")}


def find_last_checkpoint(root: Path, run_id: str | None = None) -> Path | None:
    """The newest valid checkpoint under ``root`` (``<save_dir>/<project>``), or of run ``run_id`` only.

    Looks at ``<root>/<run>/checkpoints/*.ckpt`` and Lightning's SLURM ``hpc_ckpt_*.ckpt`` files
    in ``root``'s parent, newest modification time first; a truncated or corrupt file is skipped.
    """
    runs = [root / run_id] if run_id else ([p for p in root.iterdir() if p.is_dir()] if root.is_dir() else [])
    candidates = [c for r in runs for c in (r / "checkpoints").glob("*.ckpt")]
    candidates += list(root.parent.glob("hpc_ckpt_*.ckpt")) if run_id is None else []
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        if checkpoint_is_valid(path):
            return path
    return None


def get_rng_state() -> dict[str, Any]:
    """Every global RNG: torch (CPU and each CUDA device), NumPy and Python's ``random``, as
    tensors and plain values (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": list(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(pl.Callback):
    """What a checkpoint needs beyond Lightning's own state, and what happens on preemption.

    Saved: the W&B run id (a resumed run continues that run), the global step of the last
    validation, and every global RNG as it stands after the checkpointed batch; the RNGs are
    restored right before the first resumed batch, after the data iterator was rebuilt.
    On SIGTERM Lightning stops after the current batch; this callback then writes ``last.ckpt``
    and the run exits with code 99 (``EXIT_PREEMPTED``). After a resumed fit whose final
    validation never ran, :attr:`needs_final_validation` tells the ``fr`` command to run it.
    """

    def __init__(self) -> None:
        self.wandb_id: str | None = None
        self.wandb_name: str | None = None
        self.wandb_group: str | None = None
        self.last_val_step: int = -1
        self._rng_to_restore: dict[str, Any] | None = None
        #: Set at the end of a fit whose final validation was lost (the ``fr`` command runs it).
        self.needs_final_validation = False
        self.preempted = False

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "wandb_id": self.wandb_id, "wandb_name": self.wandb_name, "wandb_group": self.wandb_group,
            "last_val_step": self.last_val_step, "rng": get_rng_state(), "pid": os.getpid(),
        }  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wandb_id = state_dict.get("wandb_id") or self.wandb_id
        self.wandb_name = state_dict.get("wandb_name") or self.wandb_name
        self.wandb_group = state_dict.get("wandb_group") or self.wandb_group
        self.last_val_step = int(state_dict.get("last_val_step", -1))
        self._rng_to_restore = state_dict.get("rng")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            run_id = getattr(logger, "run_id", None)
            if run_id:
                self.wandb_id = run_id
                self.wandb_name = getattr(logger, "run_name", None) or self.wandb_name
                self.wandb_group = getattr(logger, "run_group", None) or self.wandb_group

    # ------------------------------------------------------------- training
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Hand the checkpoint's data-loader position to the loader.

        Lightning applies stored loader states only when it builds the training loader after the
        restore, but ``configure_optimizers`` (``estimated_stepping_batches``) builds it earlier,
        so the states would be dropped; apply them here, before the first batch is drawn.
        """
        loop = trainer.fit_loop
        states = getattr(loop, "_combined_loader_states_to_load", None)
        if states and loop._combined_loader is not None:
            loop._combined_loader._load_state_dicts(states)
            loop._combined_loader_states_to_load = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.last_val_step = trainer.global_step

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.needs_final_validation = final_validation_missing(trainer, self.last_val_step)

    # ----------------------------------------------------------- preemption
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        self.preempted = True
        checkpoint = next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), None)
        directory = Path(checkpoint.dirpath) if checkpoint is not None and checkpoint.dirpath else run_dir(trainer) / "checkpoints"
        path = directory / "last.ckpt"
        trainer.save_checkpoint(path)
        rank_zero_info(f"Preempted (SIGTERM): saved {path}; resume with --ckpt_path last")


def final_validation_missing(trainer: pl.Trainer, last_val_step: int) -> bool:
    """True when a finished fit should have validated at its end but its last validation is older.

    The schedule validates at the end when ``max_epochs`` is a multiple of
    ``check_val_every_n_epoch`` (every recipe); a run resumed from a checkpoint written after
    its last training step but before that validation ended would otherwise never validate.
    """
    dm = trainer.datamodule
    if trainer.interrupted or trainer.sanity_checking or dm is None or not getattr(dm, "val_sources", None):
        return False
    if not trainer.limit_val_batches or trainer.max_epochs is None or trainer.max_epochs < 1:
        return False
    every = trainer.check_val_every_n_epoch or 1
    finished = trainer.current_epoch >= trainer.max_epochs or (trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
    return finished and trainer.max_epochs % every == 0 and last_val_step < trainer.global_step
