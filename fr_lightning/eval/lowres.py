"""Low-resolution evaluation: verification and rank-1 identification against probe resolution.

Two protocols, both with one high-resolution side and one degraded side (bicubic, anti-aliased
down to ``r`` px and back up, stored as uint8 like a real low-resolution probe):

* **verification**: a verification set (e.g. ``synth-lfw``) re-embedded with the second image
  of every pair degraded to each ``r``; accuracy by the usual 10-fold protocol;
* **identification** (TinyFace style): a gallery of one HR image per held-out identity, probes
  = other images of those identities degraded to ``r``; rank-1 accuracy by cosine similarity.

The functions below are plain (no Lightning); :class:`LowResEvaluation` is the callback that
runs them after each validation and logs ``val/<name>@<r>/acc``, ``val/<name>@<r>/rank1``
(``r = full`` for the undegraded probes) and an accuracy-vs-resolution PNG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from fr_lightning.data.pairs import PairSet
from fr_lightning.data.transforms import normalize_images
from fr_lightning.eval.callbacks import log_image, log_replicated
from fr_lightning.eval.plots import line_plot
from fr_lightning.eval.verification import evaluate_pairs, l2_normalize
from fr_lightning.functional.lowres import degrade_uint8, scale_sizes
from fr_lightning.tracking.media import line_chart, log_to_wandb, wandb_runs
from fr_lightning.utils.rundir import run_dir

#: Embeds a float image batch ``[B, 3, H, W]`` (normalised) into ``[B, D]``.
EmbedFn = Callable[[Tensor], Tensor]

#: Identification identities start here, clear of the synthetic pair sets' held-out blocks.
IDENTIFICATION_BASE = 10_000_000 + 7_000_000


@dataclass
class IdentificationSet:
    """A closed-set identification protocol: HR gallery images and (undegraded) probe images.

    Attributes:
        gallery: uint8 RGB ``[G, H, W, 3]``, one image per identity.
        gallery_ids: ``[G]`` identity of each gallery image.
        probes: uint8 RGB ``[P, H, W, 3]`` (degraded per resolution at evaluation time).
        probe_ids: ``[P]`` identity of each probe; every probe identity is in the gallery.
    """

    gallery: np.ndarray
    gallery_ids: np.ndarray
    probes: np.ndarray
    probe_ids: np.ndarray


def select_pairs(n_pairs: int, max_pairs: int) -> np.ndarray:
    """Up to ``max_pairs`` evenly strided pair indices of ``n_pairs`` (all when ``max_pairs <= 0``).

    Striding (not a prefix) keeps every fold of an LFW-style set represented, with its same and
    different pairs in their original order, so the 10 contiguous folds of the subset still
    follow the set's own folds.
    """
    if max_pairs <= 0 or max_pairs >= n_pairs:
        return np.arange(n_pairs)
    return np.unique(np.linspace(0, n_pairs - 1, max_pairs).round().astype(np.int64))


def degrade_probes(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` images at ``size`` px (0 or ``size >= H``: unchanged)."""
    if size <= 0 or size >= images.shape[1] or len(images) == 0:
        return images
    return degrade_uint8(images, size)


@torch.no_grad()
def embed_images(embed: EmbedFn, images: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Embeddings ``[N, D]`` (float32, not normalised) of uint8 RGB images, in chunks."""
    out = [embed(normalize_images(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Rows ``[a0, b0, a1, b1, ...]``: the pair layout :func:`evaluate_pairs` expects."""
    out = np.empty((2 * len(first), *first.shape[1:]), first.dtype)
    out[0::2], out[1::2] = first, second
    return out


def rank1(gallery: np.ndarray, gallery_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray) -> float:
    """Rank-1 identification rate: fraction of probes whose most cosine-similar gallery image has their identity."""
    if len(probes) == 0:
        return float("nan")
    scores = l2_normalize(probes) @ l2_normalize(gallery).T
    return float((gallery_ids[scores.argmax(axis=1)] == probe_ids).mean())


def synthetic_identification_set(
    renderer: object, identities: int = 200, probes_per_identity: int = 2, first_identity: int = IDENTIFICATION_BASE
) -> IdentificationSet:
    """Gallery and probes from the face renderer: ``identities`` held-out identities, render 0 as the
    gallery image and renders ``1..probes_per_identity`` as probes (deterministic)."""
    ids = first_identity + np.arange(identities, dtype=np.int64)
    gallery = renderer.render(ids, np.zeros_like(ids)).images  # type: ignore[attr-defined]
    probe_ids = np.repeat(ids, probes_per_identity)
    probe_idx = np.tile(np.arange(1, probes_per_identity + 1, dtype=np.int64), identities)
    probes = renderer.render(probe_ids, probe_idx).images  # type: ignore[attr-defined]
    return IdentificationSet(gallery, ids, probes, probe_ids)


def verification_vs_resolution(
    embed: EmbedFn,
    pairs: PairSet,
    sizes: Sequence[int],
    max_pairs: int = 2000,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> tuple[dict[int, float], np.ndarray, dict[int, np.ndarray]]:
    """Verification accuracy with the second image of every pair degraded to each size.

    Args:
        embed: image batch -> embeddings (e.g. the module's flip-test ``embed``).
        pairs: the verification set.
        sizes: probe sizes in px of the set's images (0 = full resolution).
        max_pairs: pairs used (evenly strided, see :func:`select_pairs`).
        device: where ``embed`` runs.
        batch_size: embedding batch size.

    Returns:
        ``(acc per size, first-image embeddings [N, D], second-image embeddings per size)`` for
        the ``N`` selected pairs; the embeddings are reused for pair-based identification.
    """
    chosen = select_pairs(len(pairs.issame), max_pairs)
    images = pairs.load(interleave(2 * chosen, 2 * chosen + 1))  # ascending, as load() expects
    first, second = images[0::2], images[1::2]
    issame = np.asarray(pairs.issame)[chosen]
    e1 = embed_images(embed, first, device, batch_size)
    acc: dict[int, float] = {}
    e2: dict[int, np.ndarray] = {}
    for size in sizes:
        e2[size] = embed_images(embed, degrade_probes(second, size), device, batch_size)
        acc[size] = evaluate_pairs(interleave(e1, e2[size]), issame, n_folds=min(10, len(chosen)))["acc"]
    return acc, e1, e2


def identification_vs_resolution(
    embed: EmbedFn,
    id_set: IdentificationSet,
    sizes: Sequence[int],
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> dict[int, float]:
    """Rank-1 identification of probes degraded to each size (px; 0 = full) against the HR gallery."""
    gallery = embed_images(embed, id_set.gallery, device, batch_size)
    return {
        size: rank1(gallery, id_set.gallery_ids, embed_images(embed, degrade_probes(id_set.probes, size), device, batch_size), id_set.probe_ids)
        for size in sizes
    }


def size_label(size: int) -> str:
    """Metric suffix of a probe size: ``8``, ..., ``full`` for 0."""
    return "full" if size == 0 else str(size)


class LowResEvaluation(pl.Callback):
    """Accuracy against probe resolution after each validation (and test) run.

    Re-embeds ``max_pairs`` pairs of the verification set ``pairs_from`` with the second image
    degraded to each size and logs ``<stage>/<name>@<r>/acc`` (e.g. ``val/synth-lowres@8/acc``); with ``identification`` also the
    rank-1 rate of degraded probes against an HR gallery, ``<stage>/<name>@<r>/rank1``. For a
    synthetic set the gallery holds one render of each of ``id_identities`` fresh held-out
    identities and the probes ``id_probes`` other renders; for any other set (a ``.bin``) it is
    built from the same-identity pairs (first image = gallery, second = probe), which counts a
    match to another image of the same person as an error when a person appears in several pairs
    (a lower bound). A PNG of both curves goes to ``<run>/plots/`` and to W&B, with a native
    W&B line chart ``<stage>/lowres_chart``.

    Sizes follow :class:`fr_lightning.methods.LowRes`'s convention: given at a
    ``sizes_relative_to``-px reference and scaled to the evaluated image size, so ``@8`` names the
    same relative resolution in the 56-px CPU recipe and in 112-px runs. Under DDP rank 0
    evaluates and broadcasts the numbers. In ``fast_dev_run`` smoke tests it uses 20 pairs and 10
    identities so the code path runs in seconds.

    Args:
        sizes: probe resolutions in px at the reference size; 0 = full resolution.
        pairs_from: name of the verification set (in ``data.val_sets``) to degrade. When the data
            has no set of that name (a real-data fragment replaced the synthetic sets) the first
            set is used, with a warning, so the recipe runs unchanged on e.g. MS1MV3 + LFW.
        name: metric prefix (``val/<name>@<r>/acc``); empty = ``synth-lowres`` for a synthetic
            set, ``<set>-lowres`` (e.g. ``lfw-lowres``) otherwise.
        max_pairs: pairs of ``pairs_from`` used (evenly strided over its folds); 0 = all.
        identification: also measure rank-1 identification.
        id_identities: gallery identities of the synthetic identification protocol.
        id_probes: probes per identity of the synthetic identification protocol.
        sizes_relative_to: reference size of ``sizes``; 0 = ``sizes`` are px of the evaluated images.
        batch_size: embedding batch size.
        plot: save and log the accuracy-vs-resolution PNG.
    """

    def __init__(
        self,
        sizes: list[int] = [8, 12, 16, 20, 24, 32, 0],
        pairs_from: str = "synth-lfw",
        name: str = "",
        max_pairs: int = 2000,
        identification: bool = True,
        id_identities: int = 200,
        id_probes: int = 2,
        sizes_relative_to: int = 112,
        batch_size: int = 256,
        plot: bool = True,
    ) -> None:
        if not sizes or any(s < 0 for s in sizes):
            raise ValueError(f"LowResEvaluation.sizes must be a non-empty list of sizes >= 0, got {sizes}")
        if id_identities < 2 or id_probes < 1:
            raise ValueError("LowResEvaluation: id_identities must be >= 2 and id_probes >= 1")
        self.sizes = [int(s) for s in sizes]
        self.pairs_from = pairs_from
        self.name = name
        self.max_pairs = max_pairs
        self.identification = identification
        self.id_identities = id_identities
        self.id_probes = id_probes
        self.sizes_relative_to = sizes_relative_to
        self.batch_size = batch_size
        self.plot = plot
        #: Last results: ``{"acc": {r: acc}, "rank1": {r: rate}}`` keyed by the nominal sizes.
        self.results: dict[str, dict[int, float]] = {}
        self._id_cache: tuple[tuple[object, ...], IdentificationSet] | None = None

    # ------------------------------------------------------------------ lookup
    def _find(self, trainer: pl.Trainer, stage: str) -> tuple[PairSet, object | None] | None:
        """The set to degrade (``pairs_from``, else the first set) and the source that built it."""
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "pair_sets") or not dm.pair_sets(stage):
            return None
        sets = dm.pair_sets(stage)
        sources = list(getattr(dm, "test_sources" if stage == "test" else "val_sources", []))
        sources += [None] * (len(sets) - len(sources))
        for pairs, source in zip(sets, sources):
            if pairs.name == self.pairs_from:
                return pairs, source
        return sets[0], sources[0]

    def metric_prefix(self, set_name: str) -> str:
        """``name``, or the default derived from the evaluated set's name."""
        if self.name:
            return self.name
        return "synth-lowres" if set_name.startswith("synth") else f"{set_name}-lowres"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Say once, at the start, which set is evaluated when ``pairs_from`` is not among them."""
        dm = trainer.datamodule
        if stage not in ("fit", "validate") or dm is None or not hasattr(dm, "pair_sets"):
            return
        names = [p.name for p in dm.pair_sets("validate")]
        if names and self.pairs_from not in names:
            rank_zero_warn(
                f"LowResEvaluation: no verification set named {self.pairs_from!r} (sets: {names}); "
                f"evaluating {names[0]!r} as {self.metric_prefix(names[0])!r}. Set pairs_from to choose another."
            )

    # -------------------------------------------------------------- evaluation
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._run(trainer, pl_module, "val", "validate")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module, "test", "test")

    def _identification_set(self, source: object, image_size: int, n_ids: int, n_probes: int) -> IdentificationSet | None:
        from fr_lightning.data.sources import SyntheticPairs
        from fr_lightning.data.synthetic import FaceRenderer

        if not isinstance(source, SyntheticPairs):
            return None
        key = (source.seed, source.nuisance_scale, image_size, n_ids, n_probes)
        if self._id_cache is None or self._id_cache[0] != key:
            renderer = FaceRenderer(seed=source.seed, image_size=image_size, nuisance_scale=source.nuisance_scale)
            self._id_cache = (key, synthetic_identification_set(renderer, n_ids, n_probes))
        return self._id_cache[1]

    def evaluate(self, pl_module: torch.nn.Module, pairs: PairSet, source: object | None, smoke: bool = False) -> dict[str, dict[int, float]]:
        """Both protocols for ``pl_module`` (any module with ``embed(images)``); keys are nominal sizes."""
        probe = pairs.load(np.array([0]))
        image_size = int(probe.shape[1])
        px = scale_sizes(self.sizes, image_size, self.sizes_relative_to)
        max_pairs, n_ids, n_probes = (20, 10, 1) if smoke else (self.max_pairs, self.id_identities, self.id_probes)
        embed = getattr(pl_module, "embed", pl_module)
        device = getattr(pl_module, "device", None) or next((q.device for q in pl_module.parameters()), torch.device("cpu"))
        trainer = getattr(pl_module, "_trainer", None)
        context = trainer.precision_plugin.val_step_context() if trainer is not None else nullcontext()
        was_training = pl_module.training
        pl_module.eval()
        try:
            with context, torch.no_grad():
                acc, e1, e2 = verification_vs_resolution(embed, pairs, sorted(set(px)), max_pairs, device, self.batch_size)
                results: dict[str, dict[int, float]] = {"acc": {s: acc[p] for s, p in zip(self.sizes, px)}}
                if self.identification:
                    id_set = self._identification_set(source, image_size, n_ids, n_probes)
                    if id_set is not None:
                        rates = identification_vs_resolution(embed, id_set, sorted(set(px)), device, self.batch_size)
                    else:
                        same = np.asarray(pairs.issame)[select_pairs(len(pairs.issame), max_pairs)]
                        ids = np.arange(int(same.sum()))
                        rates = {p: rank1(e1[same], ids, e2[p][same], ids) for p in set(px)}
                    results["rank1"] = {s: rates[p] for s, p in zip(self.sizes, px)}
        finally:
            pl_module.train(was_training)
        return results

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str, stage: str) -> None:
        found = self._find(trainer, stage)
        if found is None:
            return
        prefix_name = self.metric_prefix(found[0].name)
        results = self.evaluate(pl_module, *found, smoke=bool(trainer.fast_dev_run)) if trainer.is_global_zero else {}
        if trainer.world_size > 1:
            results = trainer.strategy.broadcast(results, src=0)
        self.results = results
        for metric, values in results.items():
            for size, value in values.items():
                log_replicated(pl_module, f"{prefix}/{prefix_name}@{size_label(size)}/{metric}", value)
        if trainer.is_global_zero:
            print(self.summary(prefix, trainer.global_step, found[0].name))
            if results and wandb_runs(trainer):
                x, series = self.curve()
                chart = line_chart([x] * len(series), list(series.values()), list(series), f"{prefix_name}: accuracy vs probe resolution", "probe px")
                log_to_wandb(trainer, {f"{prefix}/lowres_chart": chart})
            if self.plot and not trainer.fast_dev_run:
                path = self.plot_curve(run_dir(trainer) / "plots" / f"{prefix}_lowres_step{trainer.global_step}.png", found[0].name)
                log_image(trainer, f"{prefix}/lowres_curve", path)

    def summary(self, prefix: str, step: int, set_name: str) -> str:
        """The last results as a small text table."""
        head = f"\n{prefix} low-resolution ({set_name} with one side degraded) at step {step}:"
        cols = "  " + f"{'r':>6}" + "".join(f"{m:>9}" for m in self.results)
        rows = [
            "  " + f"{size_label(s):>6}" + "".join(f"{100 * self.results[m][s]:>8.2f}%" for m in self.results) for s in self.sizes
        ]
        return "\n".join([head, cols, *rows])

    def curve(self) -> tuple[list[int], dict[str, list[float]]]:
        """x (probe px; full resolution drawn at the reference size) and one series per metric."""
        full = self.sizes_relative_to or max(self.sizes) * 2
        order = sorted(self.sizes, key=lambda s: s or full)
        return [s or full for s in order], {m: [self.results[m][s] for s in order] for m in self.results}

    def plot_curve(self, path: str | Path, set_name: str) -> Path:
        """Accuracy (and rank-1) against probe resolution; full resolution drawn at the reference size."""
        x, curves = self.curve()
        labels = {"acc": f"verification accuracy ({set_name})", "rank1": "rank-1 identification"}
        series = {labels[m]: ys for m, ys in curves.items()}
        unit = f"px at {self.sizes_relative_to}-px crops" if self.sizes_relative_to else "px"
        return line_plot(x, series, path, title=f"{self.metric_prefix(set_name)}: accuracy vs probe resolution", xlabel=f"probe resolution ({unit}; rightmost = full)", ylabel="accuracy")
