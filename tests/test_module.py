"""FaceRecognitionModule: method hooks, the reducer, optimizer groups, export, schedules."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from fr_lightning.batch import FaceBatch
from fr_lightning.functional.reduce import combine_weights, reduce_loss
from fr_lightning.methods import Method, check_methods, check_needs
from fr_lightning.schedules import LRSchedule
from tests.helpers import tiny_data, tiny_module, tiny_trainer

class Recorder(Method):
    """Records hook calls (into ``calls``); adds a constant loss term and a half-zero weight mask."""

    order: ClassVar[int] = 20

    def __init__(self, term: float = 0.0, zero_first_half: bool = False, calls: list[str] | None = None) -> None:
        self.term = term
        self.zero_first_half = zero_first_half
        self.calls = [] if calls is None else calls
        self.seen: dict[str, Tensor] = {}

    def build(self, module: nn.Module) -> nn.Module:
        return nn.Linear(2, 2)

    def transform_batch(self, batch: FaceBatch, module: nn.Module) -> FaceBatch:
        self.calls.append(f"{self.name}.transform")
        return batch

    def sample_weights(self, ctx, module):  # type: ignore[no-untyped-def]
        self.calls.append(f"{self.name}.weights")
        if not self.zero_first_half:
            return None
        w = torch.ones(len(ctx.batch))
        w[: len(ctx.batch) // 2] = 0
        return w

    def loss_terms(self, ctx, module):  # type: ignore[no-untyped-def]
        self.calls.append(f"{self.name}.terms")
        self.seen["per_sample"] = ctx.output.per_sample_loss.detach().clone()
        self.seen["weights"] = ctx.weights
        # Depends on a built parameter so the method's module receives a gradient.
        p = self.parts(module).weight
        return {"bonus": torch.tensor(self.term) + 0.0 * p.sum()}


class Early(Recorder):
    order: ClassVar[int] = 10


class Needy(Method):
    requires: ClassVar[tuple[str, ...]] = ("early",)


class Rival(Method):
    conflicts_with: ClassVar[tuple[str, ...]] = ("recorder",)


class Twin(Method):
    order: ClassVar[int] = 20  # the same as Recorder's


class WantsGroups(Method):
    def needs(self) -> frozenset[str]:
        return frozenset({"group", "full_logits"})


def _fit_one_batch(tmp_path, methods: list[Method]) -> tuple:
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, callbacks=methods, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    return module, trainer


def test_methods_run_in_order_and_register_modules(tmp_path) -> None:
    calls: list[str] = []
    late, early = Recorder(calls=calls), Early(calls=calls)
    module, _ = _fit_one_batch(tmp_path, [late, early])
    assert calls == ["early.transform", "recorder.transform", "early.weights", "recorder.weights", "early.terms", "recorder.terms"]
    assert set(module.method_modules) == {"early", "recorder"}
    assert "method_modules.recorder.weight" in module.state_dict()


def test_loss_term_reaches_total_and_is_logged(tmp_path) -> None:
    method = Recorder(term=2.5)
    _, trainer = _fit_one_batch(tmp_path, [method])
    metrics = trainer.callback_metrics
    assert torch.isclose(metrics["train/loss/recorder/bonus"], torch.tensor(2.5))
    assert torch.isclose(metrics["train/loss"], metrics["train/loss/ce"] + 2.5, atol=1e-5)


def test_sample_weights_reach_the_reducer(tmp_path) -> None:
    method = Recorder(zero_first_half=True)
    _, trainer = _fit_one_batch(tmp_path, [method])
    per_sample = method.seen["per_sample"]
    expected = per_sample[len(per_sample) // 2 :].mean()
    assert torch.isclose(trainer.callback_metrics["train/loss/ce"], expected, atol=1e-5)
    assert not torch.isclose(expected, per_sample.mean(), atol=1e-4)
    assert method.seen["weights"] is not None and method.seen["weights"].sum() == len(per_sample) // 2


def test_requires_and_conflicts_are_checked() -> None:
    with pytest.raises(ValueError, match="needy requires early"):
        check_methods([Needy()])
    with pytest.raises(ValueError, match="rival cannot be combined with recorder"):
        check_methods([Rival(), Recorder()])
    with pytest.raises(ValueError, match="2 times"):
        check_methods([Recorder(), Recorder()])
    with pytest.raises(ValueError, match="recorder and twin both have order 20|twin and recorder both have order 20"):
        check_methods([Recorder(), Twin()])
    assert [type(m).__name__ for m in check_methods([Needy(), Early()])] == ["Early", "Needy"]


def test_needs_are_checked_with_the_method_named() -> None:
    check_needs([WantsGroups()], {"group": True, "full_logits": True})
    check_needs([WantsGroups()], {})  # needs the run cannot tell are left to the method
    with pytest.raises(ValueError, match="method wantsgroups needs group"):
        check_needs([WantsGroups()], {"group": False, "full_logits": True})
    with pytest.raises(ValueError, match="method wantsgroups needs full_logits"):
        check_needs([WantsGroups()], {"group": True, "full_logits": False})


def test_needs_missing_from_the_data_fail_at_setup(tmp_path) -> None:
    """A source without groups is refused before the first step, naming the method."""
    data = tiny_data()
    data.setup("fit")
    data.train_set = _WithoutGroup(data.train_set)
    trainer = tiny_trainer(tmp_path, callbacks=[WantsGroups()], max_steps=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="method wantsgroups needs group"):
        trainer.fit(tiny_module(), datamodule=data)
    assert trainer.global_step == 0


class _WithoutGroup(torch.utils.data.Dataset):
    def __init__(self, inner: torch.utils.data.Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict:
        return {k: v for k, v in self.inner[i].items() if k != "group"}


def test_reducer() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert reduce_loss(losses) == 2.5
    assert reduce_loss(losses, torch.tensor([0.0, 0.0, 1.0, 1.0])) == 3.5
    assert reduce_loss(losses, valid=torch.tensor([True, False, True, False])) == 2.0
    empty = reduce_loss(losses.requires_grad_(), torch.zeros(4))
    assert empty.item() == 0.0 and empty.requires_grad
    assert torch.equal(combine_weights([torch.tensor([2.0, 1.0]), torch.tensor([0.0, 3.0])]), torch.tensor([0.0, 3.0]))
    assert combine_weights([]) is None


def test_no_weight_decay_on_norm_and_bias() -> None:
    module = tiny_module()
    decay, no_decay = module.parameter_groups()
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    bn_weight = module.backbone.bn1.weight
    assert any(p is bn_weight for p in no_decay["params"])
    module_all = tiny_module(no_decay_norm_and_bias=False)
    assert len(module_all.parameter_groups()) == 1


def test_export_backbone_holds_only_the_embedding_network(tmp_path) -> None:
    module = tiny_module()
    path = module.export_backbone(tmp_path / "backbone.pth")
    state = torch.load(path, weights_only=True)
    assert set(state) == set(module.backbone.state_dict())
    fresh = tiny_module().backbone
    fresh.load_state_dict(state, strict=True)


@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        (LRSchedule("poly", warmup=0, power=2.0), 50, 0.25),
        (LRSchedule("poly", warmup=10, power=1.0), 4, 0.5),
        (LRSchedule("cosine"), 50, 0.5),
        (LRSchedule("cosine", min_lr_ratio=0.1), 100, 0.1),
        (LRSchedule("multistep", milestones=[0.5, 0.75], gamma=0.1), 80, 0.01),
        (LRSchedule("multistep", milestones=[30], gamma=0.5), 29, 1.0),
        (LRSchedule("constant", warmup=0.1), 99, 1.0),
    ],
)
def test_schedule_values(schedule: LRSchedule, step: int, expected: float) -> None:
    assert schedule.factor(step, 100) == pytest.approx(expected)


def test_scheduler_counts_optimizer_steps(tmp_path) -> None:
    module = tiny_module(lr_schedule=LRSchedule("poly", power=1.0))
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(module, datamodule=tiny_data())
    # 32 samples / batch 8 = 4 micro-batches = 2 optimizer steps: linear decay ends at 0.
    assert trainer.global_step == 2
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] == pytest.approx(0.0)
