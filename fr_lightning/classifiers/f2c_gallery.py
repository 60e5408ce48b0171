"""The step driver of F²C: creates the Gallery Net, runs its EMA and forward on each batch's images.

A classifier only sees embeddings; the gallery network needs the images. This :class:`Method`
(not a registered training method: it is part of the :class:`~fr_lightning.classifiers.F2C`
classifier option and is listed next to it by configs/scale/f2c.yaml) bridges the two:

* ``build`` (setup): checks the run can train F²C and gives the classifier its gallery, a
  frozen copy of the backbone (so it lives in the module's state dict and checkpoints);
* ``transform_batch`` (each step, after every other method's transform): EMA step of the gallery,
  then its features of both halves of the batch, staged for the classifier's forward.

Stacking with the registered methods: lowres, poseface and kd (without its logit term) train
with F²C; kd's logit term is refused by its own ``full_logits`` need; coteaching and gabn are
refused here, with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fr_lightning.batch import FaceBatch
from fr_lightning.classifiers.f2c import F2C
from fr_lightning.heads.base import MarginHead
from fr_lightning.methods.base import Method

if TYPE_CHECKING:
    from fr_lightning.module import FaceRecognitionModule

#: Methods that cannot train with F²C, and why (the error at setup gives the reason).
INCOMPATIBLE: dict[str, str] = {
    "coteaching": "co-teaching trains a second classifier and scores each batch twice, but the F2C pool "
    "takes each step's gallery features once and belongs to one network",
    "gabn": "GABN reads one cosine row per sample and re-forwards erased images, but F2C scores every "
    "sample against two pool matrices and updates the pool once per step",
}


class F2CGallery(Method):
    """Gallery Net of F²C: EMA copy of the backbone whose features fill the classifier's pool.

    Runs after every batch transform (``order = 90``), so the pool sees the rows the
    classifier scores (e.g. both views of lowres).
    """

    name = "f2c"
    order = 90

    def build(self, module: "FaceRecognitionModule") -> nn.Module | None:
        """Check the classifier, head and stacked methods; give the classifier its gallery network."""
        classifier = module.classifier
        if not isinstance(classifier, F2C):
            raise ValueError(
                f"trainer.callbacks lists fr_lightning.classifiers.F2CGallery but model.init_args.classifier is "
                f"{type(classifier).__name__}; set it to fr_lightning.classifiers.F2C (configs/scale/f2c.yaml)"
            )
        head = module.head
        if not head.softmax or type(head).loss is not MarginHead.loss:
            raise ValueError(f"F2C needs a softmax margin head; {type(head).__name__} supplies its own per-sample loss")
        if head.subcenters != 1:
            raise ValueError("F2C keeps one pool feature per identity; set the head's subcenters to 1")
        for other in module.methods:
            if other.name in INCOMPATIBLE:
                raise ValueError(f"method {other.name} cannot be combined with F2C (method {self.name}): {INCOMPATIBLE[other.name]}")
        classifier.attach_gallery(module.backbone)
        # The pool is identical on every rank by construction and is replaced (not written in
        # place) each step, so DDP must not broadcast it: that would send 2·Q·D floats per step.
        ignored = list(getattr(module, "_ddp_params_and_buffers_to_ignore", []))
        if "classifier.pool" not in ignored:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, [*ignored, "classifier.pool"])
        return None

    def transform_batch(self, batch: FaceBatch, module: "FaceRecognitionModule") -> FaceBatch:
        """Stage the gallery features of this batch in the classifier (the batch itself is unchanged)."""
        classifier = module.classifier
        assert isinstance(classifier, F2C)
        classifier.stage(module.backbone, batch.images, batch.labels)
        return batch
