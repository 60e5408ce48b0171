"""Cross-pose evaluation: verification accuracy per |yaw| bin of the profile side (CFP-FP style).

Every pair is decided with the threshold its fold gets in the 10-fold protocol (best accuracy on
the other nine folds, as :func:`fr_lightning.eval.verification.evaluate_pairs`), and the
decisions are averaged per bin of ``PairSet.meta["yaw"]``. Over all pairs this pools to the
protocol's accuracy (exactly, when the folds have equal size).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from fr_lightning.eval.callbacks import VerificationCallback, log_image, log_replicated, run_after_verification
from fr_lightning.eval.plots import bar_plot
from fr_lightning.eval.verification import ACC_THRESHOLDS, fold_slices, l2_normalize
from fr_lightning.tracking.media import bar_chart, log_to_wandb, wandb_runs
from fr_lightning.utils.rundir import run_dir

__all__ = ["PoseEvaluation", "accuracy_by_bin", "bin_label", "pair_decisions"]


def pair_decisions(embeddings: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Whether each pair is decided correctly under the k-fold protocol (``[N]`` bool).

    Args:
        embeddings: ``[2N, D]`` embeddings, pair ``i`` = rows ``2i, 2i+1`` (normalised here).
        issame: ``[N]`` bool.
        n_folds: contiguous folds; each fold's threshold maximises accuracy on the others
            (all pairs when ``n_folds == 1``), first maximum on ties.
    """
    emb = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    dist = np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)
    same = np.asarray(issame, dtype=bool)
    # correct[t, i]: pair i decided correctly at threshold t (same iff dist < t).
    correct = (dist[None, :] < ACC_THRESHOLDS[:, None]) == same[None, :]
    folds = fold_slices(len(same), n_folds)
    per_fold = np.stack([correct[:, f].sum(axis=1) for f in folds])  # [folds, thresholds]
    train = per_fold.sum(axis=0, keepdims=True) - per_fold if n_folds > 1 else per_fold
    out = np.zeros(len(same), bool)
    for k, f in enumerate(folds):
        out[f] = correct[int(np.argmax(train[k])), f]
    return out


def bin_label(lo: float, hi: float) -> str:
    """``"30-45"``: the metric suffix of a bin (integers printed without decimals)."""
    return f"{lo:g}-{hi:g}"


def accuracy_by_bin(correct: np.ndarray, values: np.ndarray, bins: Sequence[float]) -> dict[str, tuple[float, int]]:
    """Accuracy and pair count per bin ``[lo, hi)`` of ``values`` (the last bin includes ``hi``).

    Empty bins are left out.
    """
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bins must be at least two increasing edges, got {list(bins)}")
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, tuple[float, int]] = {}
    for k, (lo, hi) in enumerate(zip(edges, edges[1:])):
        last = k == len(edges) - 2
        inside = (values >= lo) & ((values <= hi) if last else (values < hi))
        if inside.any():
            out[bin_label(lo, hi)] = (float(correct[inside].mean()), int(inside.sum()))
    return out


class PoseEvaluation(pl.Callback):
    """Logs cross-pose accuracy per |yaw| bin after each validation: ``val/<set>/acc@yaw<lo>-<hi>``.

    Reads the flip-test embeddings the :class:`VerificationCallback` kept for ``set_name`` and the
    set's ``meta["yaw"]`` (|yaw| of the profile side of each pair, from the synthetic
    ``cross_pose`` sets); saves a bar plot ``<run>/plots/val_pose_step<N>.png`` (also sent to
    W&B, with a native W&B bar chart ``val/pose_chart``). A set without yaw meta (a real CFP-FP ``.bin``) gets no extra metrics; this is said
    once. Empty bins are not logged (``synth-cfpfp`` profiles have |yaw| in [55°, max_yaw]).

    Because the model adds the verification callback after the trainer's own callbacks, this
    callback moves itself right after it at setup, so it always sees the current embeddings.

    Args:
        set_name: the cross-pose verification set.
        bins: |yaw| bin edges in degrees.
        plot: save and log the bar plot.
    """

    def __init__(self, set_name: str = "synth-cfpfp", bins: list[float] = [0, 30, 45, 60, 90], plot: bool = True) -> None:
        if len(bins) < 2 or any(b <= a for a, b in zip(bins, bins[1:])):
            raise ValueError(f"PoseEvaluation: bins must be at least two increasing edges, got {list(bins)}")
        self.set_name = set_name
        self.bins = [float(b) for b in bins]
        self.plot = plot
        #: Last per-bin results: label -> (accuracy, pairs).
        self.results: dict[str, tuple[float, int]] = {}
        self._last: np.ndarray | None = None
        self._warned = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        run_after_verification(trainer, self)

    def _say_once(self, message: str) -> None:
        if not self._warned:
            rank_zero_info(f"PoseEvaluation: {message}")
            self._warned = True

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        verifier = next((cb for cb in trainer.callbacks if isinstance(cb, VerificationCallback)), None)
        pairs = next((p for p in trainer.datamodule.pair_sets("validate") if p.name == self.set_name), None)
        if verifier is None or pairs is None:
            self._say_once(f"no verification set named {self.set_name!r}; per-yaw accuracy is not logged.")
            return
        yaw = pairs.meta.get("yaw")
        if yaw is None:
            self._say_once(f"{self.set_name} carries no yaw per pair (a real .bin); per-yaw accuracy is not logged.")
            return
        emb = verifier.embeddings.get(self.set_name)
        if emb is None or emb is self._last:  # not (fully) embedded in this validation
            return
        self._last = emb
        self.results = accuracy_by_bin(pair_decisions(emb, pairs.issame), np.abs(yaw), self.bins)
        for label, (acc, _) in self.results.items():
            log_replicated(pl_module, f"val/{self.set_name}/acc@yaw{label}", acc)
        if self.results and wandb_runs(trainer):
            chart = bar_chart({label: acc for label, (acc, _) in self.results.items()}, "|yaw| bin (deg)", "accuracy", f"{self.set_name}: accuracy per |yaw|")
            log_to_wandb(trainer, {"val/pose_chart": chart})
        if self.plot and self.results and trainer.is_global_zero and not trainer.fast_dev_run:
            path = run_dir(trainer) / "plots" / f"val_pose_step{trainer.global_step}.png"
            values = {f"{label}° (n={n})": acc for label, (acc, n) in self.results.items()}
            bar_plot(values, path, title=f"{self.set_name}: accuracy per |yaw| of the profile", ylabel="accuracy")
            log_image(trainer, "val/pose", path)
