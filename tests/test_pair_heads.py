"""Pair-based heads in the module: no classifier, methods composed or refused at setup, the pair method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fr_lightning.backbones import iresnet18
from fr_lightning.classifiers import FullFC, NoClassifier
from fr_lightning.data import FaceDataModule, SyntheticSource
from fr_lightning.functional.pair_losses import centroid_triplet_loss, triplet_loss
from fr_lightning.heads import HEADS, ArcFace, CentroidTriplet, PairHead, Triplet
from fr_lightning.methods import METHODS, PairLoss
from fr_lightning.module import FaceRecognitionModule
from tests.helpers import tiny_trainer

PAIR_HEADS = {name: cls for name, cls in HEADS.items() if getattr(cls, "pair_based", False)}
NUM_CLASSES = 1000  # large, so an identity-sized tensor would be obvious


def _module(head: torch.nn.Module, **kwargs: object) -> FaceRecognitionModule:
    backbone = iresnet18(width=0.125, input_size=56, embedding_dim=32)
    return FaceRecognitionModule(backbone=backbone, head=head, num_classes=NUM_CLASSES, **kwargs)  # type: ignore[arg-type]


def _pk_data() -> FaceDataModule:
    return FaceDataModule(
        train=SyntheticSource(num_identities=8, samples_per_identity=4),
        val_sets=[], image_size=56, batch_size=8, num_workers=0, sampler="pk", sampler_k=2,
    )  # fmt: skip


def test_registry_lists_the_pair_heads() -> None:
    assert PAIR_HEADS == {"triplet": Triplet, "ctl": CentroidTriplet}
    assert all(issubclass(c, PairHead) for c in PAIR_HEADS.values())


@pytest.mark.parametrize("name", sorted(PAIR_HEADS))
def test_pair_head_builds_no_classifier_and_no_identity_sized_tensor(name: str) -> None:
    module = _module(PAIR_HEADS[name]())
    assert isinstance(module.classifier, NoClassifier)
    assert list(module.classifier.parameters()) == []
    for key, t in module.state_dict().items():
        assert NUM_CLASSES not in t.shape, key


@pytest.mark.parametrize("name", sorted(PAIR_HEADS))
def test_criterion_gives_the_functional_loss(name: str) -> None:
    head = PAIR_HEADS[name]()
    module = _module(head)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(8, 32, generator=g, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = module.criterion(emb, labels)
    want = triplet_loss(emb, labels, 0.2, "semihard") if name == "triplet" else centroid_triplet_loss(emb, labels, 0.3)
    assert out.per_sample_loss.shape == (8,) and torch.allclose(out.per_sample_loss, want.expand(8))
    assert out.cosine.shape == (8, 0)
    assert float(want.detach()) > 0


def test_pair_head_refuses_a_classifier_and_no_classifier_refuses_a_margin_head() -> None:
    with pytest.raises(ValueError, match=r"head Triplet is pair-based.*FullFC"):
        _module(Triplet(), classifier=lambda d, c: FullFC(d, c))
    with pytest.raises(ValueError, match=r"NoClassifier needs a pair-based head.*ArcFace"):
        _module(ArcFace(), classifier=lambda d, c: NoClassifier(d, c))


def test_methods_that_read_classifier_logits_or_losses_are_refused_naming_both(tmp_path: Path) -> None:
    from tests.test_compose import SETTINGS

    module = _module(Triplet())
    refused = {
        "coteaching": "sample_weights",
        "poseface": "target_margins",
        "lowres": "sample_weights",
        "kd": "full_logits",
        "gabn": "local_logits",
    }
    for name, word in refused.items():
        method = METHODS[name](**SETTINGS[name](tmp_path))
        with pytest.raises(ValueError) as err:
            module.attach_methods([method])
        msg = str(err.value)
        assert f"method {name}" in msg and "Triplet" in msg and word in msg, msg
    # KD without its logit term reads only embeddings: it composes
    module.attach_methods([METHODS["kd"](**{**SETTINGS["kd"](tmp_path), "logit_weight": 0.0})])
    module.attach_methods([PairLoss(loss="ctl")])


@pytest.mark.parametrize("name", sorted(PAIR_HEADS))
def test_pair_head_trains_two_steps_with_pk_batches(name: str, tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    module = _module(PAIR_HEADS[name]())
    trainer.fit(module, _pk_data())
    assert trainer.global_step == 2
    key = f"train/loss/{PAIR_HEADS[name].key}"
    assert torch.isfinite(trainer.callback_metrics[key])
    assert "train/acc" not in trainer.callback_metrics


def test_pair_method_adds_its_term_beside_a_margin_head(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, callbacks=[PairLoss(loss="triplet", weight=0.5)], max_steps=2, limit_val_batches=0)
    module = _module(ArcFace(s=16.0, m=0.3))
    trainer.fit(module, _pk_data())
    assert trainer.global_step == 2
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss/pair/triplet"]) and torch.isfinite(m["train/loss/ce"])
    with pytest.raises(ValueError, match="loss must be"):
        PairLoss(loss="contrastive")  # type: ignore[arg-type]
