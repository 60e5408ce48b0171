"""IJB 1:N as insightface's ``ijb_1n.py`` scores it, the protocol behind most published 1:N numbers.

It differs from :func:`fr_lightning.eval.ijb.protocol.identify_open_set` (per gallery, NIST's
open-set definitions) in three ways, reconstructed here from that script's behaviour:

1. **One merged gallery.** The two galleries (IJB-C G1 + G2, IJB-B S1 + S2) are searched as one,
   so every probe is mated: the search is closed-set. Each subject must own exactly one gallery
   template (the script stops otherwise).
2. **Rank-k** is the share of probes whose mate template is among the k most similar gallery
   templates (cosine of pooled, L2-normalised template features).
3. **TPIR at "FPIR" f** uses one threshold over *all* non-mate similarities (every probe against
   every non-mate gallery template): ``th`` = the ``ceil(f × probes)``-th largest of them; the
   rate is the share of probes whose mate similarity exceeds ``th``, ranked first or not.

Template pooling is the same as for 1:1 (media mean, template sum, L2 normalisation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fr_lightning.eval.verification import tar_key

__all__ = ["INSIGHTFACE_FPIRS", "search_insightface_1n"]

#: the FPIR targets the script prints
INSIGHTFACE_FPIRS: tuple[float, ...] = (1e-2, 1e-1)


def search_insightface_1n(
    probe_features: Any,
    probe_subjects: Any,
    gallery_features: Any,
    gallery_subjects: Any,
    ranks: tuple[int, ...] = (1, 5, 10),
    fpirs: tuple[float, ...] = INSIGHTFACE_FPIRS,
) -> dict[str, float]:
    """Closed-set search of probe templates against one merged gallery, scored as ``ijb_1n.py`` does.

    Args:
        probe_features: ``[P, D]`` L2-normalised probe template features.
        probe_subjects: ``[P]`` subject per probe template.
        gallery_features: ``[G, D]`` L2-normalised gallery template features (all galleries merged).
        gallery_subjects: ``[G]`` subject per gallery template; each subject exactly once.
        ranks: the k of the rank-k rates.
        fpirs: the FPIR targets of the TPIR rates.

    Returns:
        ``{"rank-1": ..., "tpir@fpir=1e-2": ..., "mated": P, "non_mated": 0}``.
    """
    gsub = np.asarray(gallery_subjects, np.int64)
    psub = np.asarray(probe_subjects, np.int64)
    subjects, counts = np.unique(gsub, return_counts=True)
    if (counts != 1).any():
        dup = subjects[counts != 1][0]
        raise ValueError(f"insightface 1:N needs one gallery template per subject; subject {dup} has {counts[counts != 1][0]}")
    order = np.argsort(gsub)
    where = np.searchsorted(gsub[order], psub)
    found = (where < len(gsub)) & (gsub[order][np.minimum(where, len(gsub) - 1)] == psub)
    if not found.all():
        raise ValueError(f"insightface 1:N: probe subject {psub[~found][0]} has no gallery template (the galleries must be merged)")
    mate = order[where]
    sim = np.asarray(probe_features, np.float64) @ np.asarray(gallery_features, np.float64).T
    rows = np.arange(len(psub))
    mate_sim = sim[rows, mate]
    better = (sim > mate_sim[:, None]).sum(axis=1)
    out: dict[str, float] = {"mated": float(len(psub)), "non_mated": 0.0}
    for k in ranks:
        out[f"rank-{k}"] = float(np.mean(better < k))
    negatives = sim.copy()
    negatives[rows, mate] = -np.inf
    negatives = negatives.ravel()
    negatives = negatives[np.isfinite(negatives)]
    for f in fpirs:
        key = f"tpir@fpir={tar_key(f).split('=')[1]}"
        need = math.ceil(len(psub) * f)
        if need < 1 or need > negatives.size:
            out[key] = float("nan")
            continue
        th = np.partition(negatives, negatives.size - need)[negatives.size - need]  # the need-th largest
        out[key] = float(np.mean(mate_sim > th))
    return out
