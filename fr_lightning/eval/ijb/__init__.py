"""IJB-B / IJB-C evaluation from the official (insightface) layout: readers, protocol, extraction.

``verify_templates`` is the 1:1 protocol on given per-image features; ``fr eval ijb`` runs it
end to end on a checkpoint (see docs/ijb.md).
"""

from fr_lightning.eval.ijb.meta import IJBGallery, IJBSet, load_ijb
from fr_lightning.eval.ijb.protocol import (
    IJB_FARS,
    identify_open_set,
    insightface_roc,
    pool_templates,
    tar_table,
    template_pair_scores,
    verify_templates,
)

__all__ = [
    "IJB_FARS",
    "IJBGallery",
    "IJBSet",
    "identify_open_set",
    "insightface_roc",
    "load_ijb",
    "pool_templates",
    "tar_table",
    "template_pair_scores",
    "verify_templates",
]
