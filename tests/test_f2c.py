"""F²C: pool rules and loss core against a float64 transcription of the authors' rules, checkpoints, methods."""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fr_lightning.classifiers import F2C, F2CGallery
from fr_lightning.classifiers.f2c import GALLERY_MISSING
from fr_lightning.classifiers.f2c import hard_negative_count
from fr_lightning.classifiers.f2c_pool import ClassPool
from fr_lightning.criterion import Criterion
from fr_lightning.heads import ArcFace, CosFace, SFace, SubCenterArcFace
from fr_lightning.methods import KD, METHODS
from tests.helpers import tiny_data, tiny_module, tiny_trainer


# ------------------------------------------------- transcription of the authors' rules (tiandunx/FFC)
class RefPool:
    """The authors' LRU (``get``: hit -> most recent; miss -> next free slot or the LRU's slot),
    slot phases (``queue_position_dict``) and dual queue, with rollback by copying everything."""

    def __init__(self, capacity: int, queue: Tensor) -> None:
        self.capacity, self.cache, self.cur = capacity, OrderedDict(), 0
        self.pos = {i: 0 for i in range(capacity)}
        self.queue = queue.clone()

    def get(self, key: int) -> int:
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        if self.cur < self.capacity:
            slot, self.cur = self.cur, self.cur + 1
        else:
            _, slot = self.cache.popitem(last=False)
        self.cache[key] = slot
        return slot

    def write(self, labels: list[int], feats: Tensor) -> tuple[list[int], list[int], set[int]]:
        rows, cols, ones = [], [], set()
        for i, gl in enumerate(labels):
            if gl not in self.cache:
                idx = self.get(gl)
                rows.append(0)
                self.pos[idx] = 1
            else:
                idx = self.get(gl)
                rows.append(self.pos[idx])
                ones.add(idx)
                self.pos[idx] = (self.pos[idx] + 1) % 2
            cols.append(idx)
            self.queue[rows[-1], idx] = feats[i]  # sequential writes: the last one stays
        return rows, cols, ones


def ref_margin_loss(cos: Tensor, label: Tensor, s: float, m: float, k: int) -> Tensor:
    """The authors' ``add_margin`` (AM branch): margin CE of positives + clipped top-k of negatives."""
    loss = cos.new_zeros(())
    pos, out = (label != -1).nonzero().squeeze(1), (label == -1).nonzero().squeeze(1)
    if pos.numel():
        c = cos[pos].clone()
        lab = label[pos]
        c[torch.arange(len(pos)), lab] = c[torch.arange(len(pos)), lab] - m
        loss = loss + F.cross_entropy(c * s, lab)
    if out.numel():
        top = torch.sort(cos[out], dim=1, descending=True).values[:, :k]
        loss = loss + top.clamp(min=0).mean()
    return loss


def ref_pass(pool: RefPool, p: Tensor, g: Tensor, gl: list[int], pl: list[int], s: float, m: float, k: int, rollback: bool) -> Tensor:
    saved = copy.deepcopy((pool.cache, pool.cur, pool.pos, pool.queue)) if rollback else None
    _, _, ones = pool.write(gl, g)
    label = torch.tensor([pool.cache.get(x, -1) for x in pl])
    cos1 = p @ pool.queue[0].t()
    mask = torch.zeros(pool.capacity, 1, dtype=p.dtype)
    mask[list(ones), 0] = 1
    cos2 = p @ (mask * pool.queue[1] + (1 - mask) * pool.queue[0]).t()
    loss = ref_margin_loss(cos1, label, s, m, k) + ref_margin_loss(cos2, label, s, m, k)
    if saved is not None:
        pool.cache, pool.cur, pool.pos, pool.queue = saved
    return loss


# --------------------------------------------------------------------------------- tests
def test_pool_assignments_match_the_authors_lru_with_and_without_rollback() -> None:
    rnd = random.Random(0)
    for capacity in (1, 3, 7):
        pool, ref = ClassPool(capacity), RefPool(capacity, torch.zeros(2, capacity, 1))
        for step in range(60):
            labels = [rnd.randrange(12) for _ in range(rnd.randrange(1, 10))]
            commit = step % 3 != 0
            plan = pool.plan(labels)
            saved = copy.deepcopy((ref.cache, ref.cur, ref.pos))
            rows, cols, ones = ref.write(labels, torch.zeros(len(labels), 1))
            assert (plan.rows, plan.slots, plan.updated) == (rows, cols, ones)
            assert [plan.view(x) for x in range(14)] == [ref.cache.get(x, -1) for x in range(14)]
            if commit:
                pool.commit(plan)
            else:
                ref.cache, ref.cur, ref.pos = saved
            assert list(pool.order.items()) == list(ref.cache.items())
            assert pool.phase == [ref.pos[i] for i in range(capacity)] and pool.filled == ref.cur


def test_hard_negative_count_is_the_authors_rule() -> None:
    assert [hard_negative_count(q) for q in (1, 10, 1000, 20000, 40000, 10**6)] == [1, 3, 3, 4, 8, 10]


@pytest.mark.parametrize("capacity", [4, 16])
def test_loss_and_gradient_equal_the_authors_rules_in_float64(capacity: int) -> None:
    torch.manual_seed(0)
    d, n, s, m = 8, 10, 32.0, 0.4
    clf = F2C(d, 40, capacity=capacity).double().train()
    head = CosFace(s=s, m=m)
    ref = RefPool(capacity, clf.pool.clone())
    k = hard_negative_count(capacity)
    for _ in range(4):  # several steps: the pool fills, identities are evicted, slots flip rows
        labels = torch.randint(0, 9, (n,))
        emb = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
        gallery = F.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
        clf._staged = (gallery, labels)
        out = Criterion(clf, head)(emb, labels)
        loss = out.per_sample_loss.mean()
        (grad,) = torch.autograd.grad(loss, emb)
        emb_ref = emb.detach().clone().requires_grad_(True)
        p = F.normalize(emb_ref, dim=1)
        h, lab = n // 2, labels.tolist()
        want = ref_pass(ref, p[:h], gallery[h:], lab[h:], lab[:h], s, m, k, rollback=True)
        want = want + ref_pass(ref, p[h:], gallery[:h], lab[:h], lab[h:], s, m, k, rollback=False)
        (grad_ref,) = torch.autograd.grad(want, emb_ref)
        torch.testing.assert_close(loss, want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(clf.pool, ref.queue, rtol=0, atol=0)
        assert list(clf.lru.order.items()) == list(ref.cache.items())


def test_gallery_is_a_frozen_copy_moved_by_the_authors_ema() -> None:
    backbone = torch.nn.Linear(3, 4)
    clf = F2C(4, 10, capacity=2, momentum=0.9)
    clf.attach_gallery(backbone)
    assert clf.gallery is not backbone and not any(p.requires_grad for p in clf.gallery.parameters())
    before = clf.gallery.weight.detach().clone()
    with torch.no_grad():
        backbone.weight.add_(1.0)
    clf.update_gallery(backbone)
    torch.testing.assert_close(clf.gallery.weight, 0.9 * before + 0.1 * backbone.weight.detach())


def test_scoring_mode_leaves_the_pool_unchanged() -> None:
    clf = F2C(4, 10, capacity=3).eval()
    before = clf.pool.clone()
    clf._staged = (F.normalize(torch.randn(6, 4), dim=1), torch.tensor([0, 1, 2, 3, 4, 5]))
    cosine, target = clf(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 5]))
    assert cosine.shape == (12, 3) and target.shape == (12,)
    assert torch.equal(clf.pool, before) and len(clf.lru) == 0


def _f2c_module(capacity: int = 8):  # noqa: ANN202
    return tiny_module(classifier=lambda d, c: F2C(d, c, capacity=capacity))


def test_f2c_binds_its_gallery_and_refuses_what_it_cannot_train_with() -> None:
    backbone = torch.nn.Linear(3, 4)
    clf = F2C(4, 10, capacity=2)
    with pytest.raises(RuntimeError, match="no gallery features staged"):
        clf(torch.randn(2, 4), torch.tensor([0, 1]))  # never bound, nothing staged
    with pytest.raises(RuntimeError, match="F2C.bind"):
        clf.update_gallery(backbone)
    with pytest.raises(ValueError, match="set the head's subcenters to 1"):
        clf.bind(backbone, SubCenterArcFace(k=3))
    with pytest.raises(ValueError, match="softmax margin head"):
        clf.bind(backbone, SFace())
    assert clf.gallery is None
    clf.bind(backbone, ArcFace())
    assert clf.gallery is not None and clf.ddp_ignore("classifier.") == ["classifier.pool"]
    assert "F2C.bind" in GALLERY_MISSING


def test_the_retired_gallery_callback_only_warns() -> None:
    with pytest.warns(UserWarning, match="F2CGallery is no longer needed"):
        F2CGallery().setup(None, None, "fit")


@pytest.mark.slow  # 37-66 s on the loaded 2-core machine; the default suite stays under 5 minutes
def test_checkpoint_holds_pool_and_gallery_and_resumes_the_same_next_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _f2c_module()
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    data = tiny_data(batch_size=8)
    trainer.fit(module, data)
    assert len(module.classifier.lru) > 0
    trainer.save_checkpoint(tmp_path / "f2c.ckpt")
    state = torch.load(tmp_path / "f2c.ckpt", weights_only=True)["state_dict"]
    assert "classifier.pool" in state and any(k.startswith("classifier.gallery.") for k in state)
    fresh = _f2c_module()
    fresh.classifier.bind(fresh.backbone, fresh.head)
    assert not torch.equal(fresh.classifier.pool, module.classifier.pool)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.classifier.pool, module.classifier.pool)
    assert list(fresh.classifier.lru.order.items()) == list(module.classifier.lru.order.items())
    assert fresh.classifier.lru.phase == module.classifier.lru.phase
    for (ka, a), (kb, b) in zip(module.classifier.gallery.state_dict().items(), fresh.classifier.gallery.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    batch = next(iter(data.train_dataloader()))
    losses = []
    for mod in (module, fresh):
        mod.train()
        mod.classifier.prepare_batch(batch, mod.backbone)
        losses.append(mod.forward_train(batch.images, batch.labels).per_sample_loss.mean())
    assert torch.equal(losses[0], losses[1]) and torch.isfinite(losses[0])
    assert torch.equal(fresh.classifier.pool, module.classifier.pool)


# ------------------------------------------------------------- stacking with the methods
EXPECTED_REFUSAL = {"coteaching": "co-teaching trains a second classifier", "gabn": "GABN reads one cosine row"}


def _settings(name: str, tmp_path: Path) -> dict:
    from tests.test_compose import SETTINGS

    return SETTINGS[name](tmp_path)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_attaches_to_f2c_or_is_refused_with_the_reason(name: str, tmp_path: Path) -> None:
    module = _f2c_module()
    module.classifier.bind(module.backbone, module.head)
    methods = [METHODS[name](**_settings(name, tmp_path))]
    if name in EXPECTED_REFUSAL:
        with pytest.raises(ValueError, match=EXPECTED_REFUSAL[name]):
            module.attach_methods(methods)
        return
    if name == "kd":  # its logit term needs every class's logit: refused by its own need ...
        with pytest.raises(ValueError, match="method kd needs full_logits"):
            module.attach_methods(methods)
        methods[0] = KD(**{**_settings(name, tmp_path), "logit_weight": 0.0})  # ... without it, it stacks
    module.attach_methods(methods)
    module._setup_sharded_classifier(1, 0)
    assert module.classifier.gallery is not None
    assert module._ddp_params_and_buffers_to_ignore == ["classifier.pool"]


@pytest.mark.slow  # a few seconds each; the checkpoint test above trains F2C in the default suite
@pytest.mark.parametrize("name", ["lowres", "poseface", "kd"])
def test_f2c_trains_two_steps_with_a_compatible_method(name: str, tmp_path: Path) -> None:
    settings = _settings(name, tmp_path)
    if name == "kd":
        settings["logit_weight"] = 0.0
    trainer = tiny_trainer(tmp_path, callbacks=[METHODS[name](**settings)], max_steps=2, limit_val_batches=0)
    module = _f2c_module()
    trainer.fit(module, tiny_data(batch_size=4))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(k.startswith(f"train/loss/{name}/") for k in trainer.callback_metrics)
    assert len(module.classifier.lru) > 0
