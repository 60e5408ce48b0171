"""Training set and verification sets made from the synthetic face renderer."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fr_lightning.data.pairs import PairSet
from fr_lightning.data.resume import key_uniform, sample_keys
from fr_lightning.data.sources.base import FaceSet
from fr_lightning.data.synthetic import FaceRenderer
from fr_lightning.data.transforms import hflip_landmarks, normalize_images
from fr_lightning.functional.lowres import degrade_uint8

#: Held-out (verification) identities start here so they never meet a training identity.
HELD_OUT_BASE = 10_000_000


class SyntheticFaceDataset(FaceSet):
    """A finite synthetic training set: ``num_identities × samples_per_identity`` deterministic faces.

    Sample ``i`` is identity ``i % num_identities``, rendering index ``i // num_identities``, so a
    sample depends only on (seed, identity, index). Fetching is batched (``__getitems__``) because
    the renderer is much faster on a batch.
    """

    def __init__(
        self,
        renderer: FaceRenderer,
        num_identities: int,
        samples_per_identity: int,
        hflip: bool = True,
    ) -> None:
        self.renderer = renderer
        self.num_identities = num_identities
        self.samples_per_identity = samples_per_identity
        self.hflip = hflip
        self.labels = np.arange(len(self), dtype=np.int64) % num_identities

    def __len__(self) -> int:
        return self.num_identities * self.samples_per_identity

    def __getitems__(self, indices: list[int]) -> list[dict[str, object]]:
        idx = np.asarray(indices, dtype=np.int64)
        ids = idx % self.num_identities
        out = self.renderer.render(ids, idx // self.num_identities)
        images, landmarks = out.images, out.landmarks.copy()
        # The flip is a pure function of (loader seed, epoch, sample index), never of a global RNG
        # (see fr_lightning/data/resume.py), so it survives worker counts, prefetching and resume.
        flip = key_uniform(sample_keys(idx)) < 0.5 if self.hflip else np.zeros(len(idx), bool)
        if flip.any():
            images = images.copy()
            images[flip] = images[flip, :, ::-1]
            landmarks[flip] = hflip_landmarks(landmarks[flip], images.shape[2])
        tensors = normalize_images(images)
        pose = out.pose.copy()
        if flip.any():
            pose[flip, 0] *= -1.0  # mirrored yaw
            pose[flip, 2] *= -1.0  # mirrored roll
        return [
            {
                "images": tensors[k],
                "labels": int(out.labels[k]),
                "landmarks": landmarks[k],
                "pose": pose[k],
                "group": int(out.group[k]),
                "index": int(i),
            }
            for k, i in enumerate(idx)
        ]

    def __getitem__(self, index: int) -> dict[str, object]:
        return self.__getitems__([index])[0]


def synthetic_pairs(
    renderer: FaceRenderer,
    name: str,
    kind: Literal["standard", "cross_pose", "lowres", "group"] = "standard",
    pairs: int = 6000,
    folds: int = 10,
    identities_per_fold: int = 60,
    lowres_size: int = 12,
    group: int = 0,
    set_seed: int = 0,
) -> PairSet:
    """Build an LFW-style pair set from held-out identities.

    Each of ``folds`` contiguous blocks holds its own identities (identity-disjoint folds, like
    LFW), first its same-identity pairs then its different-identity pairs.

    Args:
        renderer: the renderer (its seed fixes identities' looks).
        name: set name used in metric keys.
        kind: ``standard``; ``cross_pose`` (first image frontal, second a profile, like CFP-FP);
            ``lowres`` (second image degraded to ``lowres_size`` px); ``group`` (all identities of
            demographic ``group``, like RFW).
        pairs: number of pairs (split evenly into same/different per fold).
        folds: number of folds.
        identities_per_fold: held-out identities in each fold.
        lowres_size: probe resolution for ``lowres``.
        group: demographic group for ``group``.
        set_seed: picks which held-out identities and samples are used.
    """
    if pairs < 2 * folds:
        raise ValueError(f"{name}: need at least {2 * folds} pairs for {folds} folds, got {pairs}")
    rng = np.random.default_rng([renderer.seed, set_seed, 7919])
    per_fold = np.full(folds, pairs // folds)
    per_fold[: pairs % folds] += 1
    id_a, id_b, issame = [], [], []
    for f in range(folds):
        base = HELD_OUT_BASE + set_seed * 100_000 + f * identities_per_fold
        n_same = per_fold[f] // 2
        n_diff = per_fold[f] - n_same
        same = rng.integers(0, identities_per_fold, n_same) + base
        a = rng.integers(0, identities_per_fold, n_diff)
        b = (a + rng.integers(1, identities_per_fold, n_diff)) % identities_per_fold
        id_a += [same, a + base]
        id_b += [same, b + base]
        issame += [np.ones(n_same, bool), np.zeros(n_diff, bool)]
    first, second = np.concatenate(id_a), np.concatenate(id_b)
    n = len(first)
    ids = np.empty(2 * n, np.int64)
    ids[0::2], ids[1::2] = first, second
    # Sample indices far apart so the two images of a same pair are different renders.
    sample_idx = rng.integers(0, 1_000_000, 2 * n)
    yaw = None
    meta: dict[str, np.ndarray] = {}
    if kind == "cross_pose":
        yaw = np.empty(2 * n, np.float32)
        yaw[0::2] = rng.normal(0.0, 5.0, n)
        yaw[1::2] = rng.choice([-1.0, 1.0], n) * rng.uniform(55.0, renderer.max_yaw, n)
        meta["yaw"] = np.abs(yaw[1::2])
    groups = np.full(2 * n, group, np.int64) if kind == "group" else None
    if groups is not None:
        meta["group"] = groups[0::2].copy()

    def load(indices: np.ndarray) -> np.ndarray:
        out = renderer.render(
            ids[indices],
            sample_idx[indices],
            yaw=None if yaw is None else yaw[indices],
            group=None if groups is None else groups[indices],
        ).images
        if kind == "lowres":
            probe = indices % 2 == 1
            if probe.any():
                out = out.copy()
                out[probe] = degrade_uint8(out[probe], lowres_size)
        return out

    return PairSet(name=name, issame=np.concatenate(issame), load=load, meta=meta)
