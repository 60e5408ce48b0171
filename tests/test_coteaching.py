"""Co-teaching (docs/methods.md): label noise, functional core, selection on flipped images, fit/resume."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fr_lightning.batch import FaceBatch
from fr_lightning.data import LabelNoise, pairflip_noise, symmetric_noise
from fr_lightning.functional.coteaching import (
    forget_rate,
    mean_point_agreement,
    selection_quality,
    selection_score,
    small_loss_mask,
)
from fr_lightning.methods import CoTeaching
from tests.helpers import tiny_data, tiny_module, tiny_trainer


# ------------------------------------------------------------------ label noise
@pytest.mark.parametrize("fn", [symmetric_noise, pairflip_noise])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.6])
def test_noise_rate_exact_deterministic_and_never_true(fn, rate: float) -> None:
    labels = np.arange(1000) % 10
    noisy = fn(labels, rate, 10, seed=3)
    changed = noisy != labels
    assert changed.sum() == round(rate * 1000)
    assert np.array_equal(noisy, fn(labels, rate, 10, seed=3))
    assert rate == 0 or not np.array_equal(noisy, fn(labels, rate, 10, seed=4))
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert np.array_equal(labels, np.arange(1000) % 10), "input must not be modified"


def test_pairflip_goes_to_next_class_and_symmetric_spreads() -> None:
    labels = np.arange(2000) % 5
    noisy = pairflip_noise(labels, 0.4, 5, seed=0)
    flipped = noisy != labels
    assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % 5)
    sym = symmetric_noise(labels, 0.4, 5, seed=0)
    moved = sym != labels
    assert len(np.unique((sym[moved] - labels[moved]) % 5)) == 4  # every other class is reached


def test_datamodule_label_noise_carries_clean_labels() -> None:
    dm = tiny_data(num_identities=8)
    dm.label_noise = LabelNoise(kind="symmetric", rate=0.5, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.clean_labels is not None and batch.index is not None
    assert torch.equal(batch.clean_labels, batch.index % 8)
    assert (batch.labels != batch.clean_labels).any()
    assert (dm.train_set.labels != dm.train_set.clean).sum() == 16  # type: ignore[union-attr]
    plain = tiny_data()
    plain.setup("fit")
    assert next(iter(plain.train_dataloader())).clean_labels is None


# -------------------------------------------------------------- functional core
@pytest.mark.parametrize("b", [1, 7, 10, 33])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.65, 1.0])
def test_small_loss_mask_size_and_choice(b: int, rate: float) -> None:
    scores = torch.randn(b, generator=torch.Generator().manual_seed(b))
    mask = small_loss_mask(scores, rate)
    keep = math.floor((1 - rate) * b)
    assert mask.dtype == torch.bool and int(mask.sum()) == keep
    if 0 < keep < b:
        assert scores[mask].max() <= scores[~mask].min()


def test_forget_rate_schedule() -> None:
    # The linear ramp from zero (the authors' default schedule: tests/test_noisy_schedule.py).
    assert forget_rate(0, 0.4, 10, shape="linear") == 0.0
    assert forget_rate(5, 0.4, 10, shape="linear") == pytest.approx(0.2)
    assert forget_rate(10, 0.4, 10, shape="linear") == pytest.approx(0.4)
    assert forget_rate(25, 0.4, 10, shape="linear") == pytest.approx(0.4)
    assert forget_rate(0, 0.4, 0, shape="linear") == pytest.approx(0.4)


def test_selection_score_and_agreement_against_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])
    ce1, ce2 = F.cross_entropy(z1, labels, reduction="none"), F.cross_entropy(z2, labels, reduction="none")
    expected = []
    for i in range(4):
        p1, p2 = torch.softmax(z1[i], 0), torch.softmax(z2[i], 0)
        kl = sum(float(p2[c] * math.log(p2[c] / p1[c]) + p1[c] * math.log(p1[c] / p2[c])) for c in range(6))
        expected.append(0.35 * float(ce1[i] + ce2[i]) + 0.65 * kl)
    got = selection_score(ce1, ce2, z1, z2, lam=0.65)
    assert torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)

    mean = (z1 + z2) / 2
    hand = sum(float((z1[i, j] - mean[i, j]) ** 2 + (z2[i, j] - mean[i, j]) ** 2) for i in range(4) for j in range(6)) / 24
    assert float(mean_point_agreement(z1, z2)) == pytest.approx(hand, rel=1e-5)
    assert float(mean_point_agreement(z1, z1)) == 0.0


def test_selection_quality() -> None:
    sel = torch.tensor([True, True, False, False])
    clean = torch.tensor([True, False, True, False])
    precision, recall = selection_quality(sel, clean)
    assert float(precision) == 0.5 and float(recall) == 0.5
    p0, _ = selection_quality(torch.zeros(4, dtype=torch.bool), clean)
    assert float(p0) == 0.0


# ------------------------------------------------------------------ callback
def _batch(n: int = 8) -> FaceBatch:
    g = torch.Generator().manual_seed(1)
    return FaceBatch(images=torch.randn(n, 3, 56, 56, generator=g), labels=torch.arange(n) % 8, index=torch.arange(n))


def test_peer_is_registered_and_fresh() -> None:
    module, method = tiny_module(), CoTeaching()
    module.attach_methods([method])
    peer = module.method_modules["coteaching"]
    assert set(peer.keys()) == {"backbone", "classifier"}
    a, b = module.backbone.state_dict(), peer["backbone"].state_dict()
    assert a.keys() == b.keys()
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])
    assert not torch.equal(module.classifier.weight, peer["classifier"].weight)


def test_selection_scores_the_flipped_images_without_grad() -> None:
    module, method = tiny_module(), CoTeaching()
    module.attach_methods([method])
    batch = _batch()
    seen: list[tuple[str, torch.Tensor, bool]] = []
    for name, net in (("module", module.backbone), ("peer", module.method_modules["coteaching"]["backbone"])):
        net.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, args[0].detach().clone(), torch.is_grad_enabled())))
    scores = method.score(module, batch.images, batch.labels)
    assert scores.shape == (8,) and not scores.requires_grad
    flipped = torch.flip(batch.images, dims=[3])
    assert {name for name, _, _ in seen} == {"module", "peer"}
    for _, images, grad in seen:
        assert torch.equal(images, flipped) and not grad
    # A score that depends on orientation: it is the flipped image's score, not the original's.
    module.eval()
    direct = method.score(module, torch.flip(batch.images, dims=[3]), batch.labels)
    again = method.score(module, batch.images, batch.labels)
    assert not torch.allclose(direct, again)


class _Recorder(pl.Callback):
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def _noisy_data() -> pl.LightningDataModule:
    dm = tiny_data(num_identities=8)
    dm.label_noise = LabelNoise(rate=0.4, seed=0)
    return dm


@pytest.mark.parametrize("mode", ["batch", "epoch"])
def test_two_batch_fit_logs_selection_quality(mode: str, tmp_path: Path) -> None:
    method = CoTeaching(forget_rate=0.5, ramp=0, mode=mode)
    rec = _Recorder()
    trainer = tiny_trainer(tmp_path, callbacks=[method, rec], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    data = _noisy_data()
    if mode == "epoch":  # persistent workers: the scoring pass must not reset the fit loop's iterator
        data.num_workers = 1
    trainer.fit(tiny_module(), data)
    metrics = trainer.callback_metrics
    assert trainer.global_step == 2
    for key in ("train/coteaching/precision", "train/coteaching/recall", "train/loss/coteaching/peer_ce", "train/loss/coteaching/agreement"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert float(metrics["train/coteaching/forget_rate"]) == pytest.approx(0.5)
    if mode == "batch":
        assert rec.metrics[0]["train/coteaching/selected"] == pytest.approx(0.5)  # ⌊0.5·8⌋ of 8
    else:  # ⌊0.5·32⌋ of the whole set
        assert method.keep is not None and int(method.keep.sum()) == 16 and method.scored_epoch == 0


def test_empty_selection_gives_zero_supervised_loss(tmp_path: Path) -> None:
    method = CoTeaching(forget_rate=1.0, ramp=0)
    trainer = tiny_trainer(tmp_path, callbacks=[method], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(tiny_module(), _noisy_data())
    m = trainer.callback_metrics
    assert float(m["train/loss/ce"]) == 0.0 and float(m["train/loss/coteaching/peer_ce"]) == 0.0
    assert torch.isfinite(m["train/loss"])


def test_checkpoint_resume_restores_peers_and_selection(tmp_path: Path) -> None:
    method = CoTeaching(forget_rate=0.5, ramp=0, mode="epoch", freeze_after=0)
    trainer = tiny_trainer(tmp_path, callbacks=[method], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    module = tiny_module()
    trainer.fit(module, _noisy_data())
    ckpt = tmp_path / "ct.ckpt"
    trainer.save_checkpoint(ckpt)
    saved_keep = method.keep.clone()  # type: ignore[union-attr]
    saved_peer = {k: v.clone() for k, v in module.method_modules["coteaching"].state_dict().items()}

    resumed = CoTeaching(forget_rate=0.5, ramp=0, mode="epoch", freeze_after=0)
    module2 = tiny_module()
    captured: dict[str, torch.Tensor] = {}

    class _Grab(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            captured.update({k: v.clone() for k, v in pl_module.method_modules["coteaching"].state_dict().items()})
            captured["main"] = pl_module.backbone.conv1.weight.detach().clone()

    trainer2 = tiny_trainer(tmp_path, callbacks=[resumed, _Grab()], max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    trainer2.fit(module2, _noisy_data(), ckpt_path=str(ckpt))
    assert trainer2.global_step == 4
    for k, v in saved_peer.items():
        assert torch.equal(captured[k], v), k
    assert torch.equal(captured["main"], module.backbone.conv1.weight.detach())
    # Frozen after epoch 0: the resumed run kept the checkpointed selection instead of re-scoring.
    assert resumed.scored_epoch == 0 and torch.equal(resumed.keep, saved_keep)  # type: ignore[arg-type]


def test_export_mean(tmp_path: Path) -> None:
    method = CoTeaching(export_mean=True)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, callbacks=[method], max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(module, tiny_data())
    state = torch.load(tmp_path / "coteaching_mean_embedding.pt", weights_only=True)
    fresh, other = tiny_module(), CoTeaching()
    fresh.attach_methods([other])
    net = other.mean_embedding(fresh)
    net.backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    net.peer.load_state_dict({k[len("peer."):]: v for k, v in state.items() if k.startswith("peer.")})
    module.eval(), net.eval()
    x = _batch(2).images
    expected = 0.5 * (module.backbone(x) + module.method_modules["coteaching"]["backbone"](x))
    assert torch.allclose(net(x), expected, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_peers_share_the_sampled_classes_of_partial_fc(tmp_path, sparse: bool) -> None:
    from fr_lightning.classifiers import PartialFC

    module = tiny_module(num_classes=8, classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5, sparse_grad=sparse))
    method = CoTeaching(forget_rate=0.25, ramp=0)
    main_samples: list[torch.Tensor] = []  # peer 1's sample after each of its passes
    peer_given: list[torch.Tensor | None] = []  # the sample peer 2 was told to use

    class _Spy(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            pl_module.classifier.register_forward_hook(lambda m, a, o: main_samples.append(m.last_index.clone()))
            peer = method.parts(pl_module)["classifier"]
            peer.register_forward_pre_hook(lambda m, a, kw: peer_given.append(kw.get("index")), with_kwargs=True)

    trainer = tiny_trainer(tmp_path, callbacks=[method, _Spy()], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(module, tiny_data())
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    # Per step: peer 1's training pass (sample A), both scoring passes (peer 1 draws B, peer 2
    # reuses B), then peer 2's training pass reusing A.
    assert len(main_samples) == 4 and len(peer_given) == 4
    for step in range(2):
        a, b = main_samples[2 * step], main_samples[2 * step + 1]
        scoring, training = peer_given[2 * step], peer_given[2 * step + 1]
        assert scoring is not None and torch.equal(scoring, b) and b.numel() >= 4
        assert training is not None and torch.equal(training, a)


@pytest.mark.parametrize("eval_embedding", ["own", "mean"])
def test_evaluation_embedding_is_used_by_validate_test_predict_and_export(eval_embedding: str, tmp_path: Path) -> None:
    """Validation, test, predict and export all embed with co-teaching's evaluation embedding."""
    method = CoTeaching(ramp=0, eval_embedding=eval_embedding)  # type: ignore[arg-type]
    module = tiny_module()
    module.attach_methods([method])
    module.eval()
    peer = method.parts(module)["backbone"]
    x = _batch(4).images

    def expected(images: torch.Tensor) -> torch.Tensor:
        own = module.backbone(images)
        return 0.5 * (own + peer(images)) if eval_embedding == "mean" else own

    with torch.no_grad():
        flip_sum = expected(x) + expected(torch.flip(x, dims=[3]))
        val = module.validation_step({"images": x, "index": torch.arange(4)}, 0)["embeddings"]
        test = module.test_step({"images": x, "index": torch.arange(4)}, 0)["embeddings"]
        pred = module.predict_step({"images": x}, 0)
    torch.testing.assert_close(val, flip_sum.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(test, flip_sum.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pred, F.normalize(flip_sum.float(), dim=1), atol=1e-5, rtol=1e-5)
    state = torch.load(module.export_backbone(tmp_path / "export.pth"), weights_only=True)
    if eval_embedding == "mean":
        assert {k.split(".")[0] for k in state} == {"backbone", "peer"}
        assert set(state) == set(method.mean_embedding(module).state_dict())
    else:
        assert set(state) == set(module.backbone.state_dict())

    # Through a trainer (the methods are attached at setup): the peer embeds iff the mean is used.
    calls: list[int] = []
    handle = peer.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    trainer = tiny_trainer(tmp_path, callbacks=[method], limit_val_batches=1, limit_test_batches=1, limit_predict_batches=1)
    for run in (trainer.validate, trainer.test, trainer.predict):
        calls.clear()
        run(module, datamodule=tiny_data())
        assert bool(calls) == (eval_embedding == "mean"), run.__name__
    handle.remove()
