"""Methods compose: every pair and the whole stack from the registry, the scoring pass, config stacking."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from fr_lightning.batch import FaceBatch
from fr_lightning.classifiers import PartialFC
from fr_lightning.cli import cli_main
from fr_lightning.criterion import scoring_pass, training_pass
from fr_lightning.heads import AdaFace
from fr_lightning.backbones import iresnet18
from fr_lightning.methods import KD, METHODS, CoTeaching, LowRes, Method
from fr_lightning.module import FaceRecognitionModule
from fr_lightning.cli.compose import compose, compose_files
from tests.helpers import tiny_data, tiny_module, tiny_teacher, tiny_teacher_backbone, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]

#: Test settings of every registered method (a callable gets a temporary directory): kept short
#: so two steps exercise every term (no warm-ups, a teacher file for kd).
SETTINGS: dict[str, Callable[[Path], dict[str, object]]] = {
    "lowres": lambda tmp: {},
    "poseface": lambda tmp: {},
    "coteaching": lambda tmp: {"forget_rate": 0.25, "ramp": 0},
    # 48-d teacher vs the 32-d tiny student: the projector, ND and logit terms all run.
    "kd": lambda tmp: {
        "teacher": str(tiny_teacher(tmp / "teacher.ckpt")),
        "teacher_backbone": tiny_teacher_backbone(),
        "nd_weight": 1.0,
        "logit_weight": 1.0,
        "logit_warmup_epochs": 0.0,
    },
    "gabn": lambda tmp: {"warmup": 0},
    # The pair-based auxiliary term beside the margin head (the pair-based heads themselves, with
    # no classifier, and the methods they refuse: tests/test_pair_heads.py).
    "pair": lambda tmp: {"loss": "triplet", "weight": 0.5},
}

#: Combinations refused at setup, with a word of the reason the error must give (none today).
REFUSED: dict[frozenset[str], str] = {}

#: Every pair (marked slow: CI runs them as its second step) and the whole stack (default suite).
STACKS = [pytest.param(p, marks=pytest.mark.slow) for p in itertools.combinations(sorted(METHODS), 2)]
STACKS.append(pytest.param(tuple(sorted(METHODS))))


def _build(name: str, tmp_path: Path) -> Method:
    if name not in SETTINGS:
        pytest.fail(f"method {name} is registered but has no test settings; add it to SETTINGS in {__file__}")
    return METHODS[name](**SETTINGS[name](tmp_path))


def test_registry_has_unique_names_and_orders_and_settings() -> None:
    assert {"lowres", "poseface", "coteaching", "kd", "gabn"} <= set(METHODS)
    assert set(SETTINGS) == set(METHODS), "SETTINGS must list exactly the registered methods"
    orders = [cls.order for cls in METHODS.values()]
    assert len(set(orders)) == len(orders)
    for name, cls in METHODS.items():
        assert cls.name == name and cls.__module__ == f"fr_lightning.methods.{name}"
        assert (ROOT / "configs" / "methods" / f"{name}.yaml").is_file(), f"no fragment for {name}"


@pytest.mark.parametrize("names", STACKS, ids=lambda names: "+".join(names))
def test_stack_trains_two_steps_or_is_refused_at_setup(names: tuple[str, ...], tmp_path: Path) -> None:
    methods = [_build(n, tmp_path) for n in names]
    trainer = tiny_trainer(tmp_path, callbacks=methods, max_steps=2, limit_val_batches=0)
    refused = REFUSED.get(frozenset(names))
    if refused is not None:
        with pytest.raises(ValueError) as err:
            trainer.fit(tiny_module(), tiny_data(batch_size=4))
        assert trainer.global_step == 0
        assert all(n in str(err.value) for n in names) and refused in str(err.value)
        return
    trainer.fit(tiny_module(), tiny_data(batch_size=4))
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    for name in names:
        terms = [k for k in metrics if k.startswith(f"train/loss/{name}/")]
        assert terms, f"no train/loss/{name}/* term logged"
        assert all(torch.isfinite(metrics[k]) for k in terms)


def test_a_need_the_run_lacks_is_refused_before_any_step(tmp_path: Path) -> None:
    """kd's logit term needs every class's logit; a sampled Partial FC is refused at setup."""
    module = tiny_module(classifier=lambda d, c: PartialFC(d, c, sample_rate=0.5))
    with pytest.raises(ValueError, match="method kd needs full_logits"):
        module.attach_methods([KD(**SETTINGS["kd"](tmp_path))])
    module.attach_methods([KD(**{**SETTINGS["kd"](tmp_path), "logit_weight": 0.0})])  # no logit term: fine


# ------------------------------------------------------------------ scoring pass
def _adaface_module() -> FaceRecognitionModule:
    """The tiny network with AdaFace, a head that keeps running norm statistics (buffers)."""
    backbone = iresnet18(width=0.125, input_size=56, embedding_dim=32)
    return FaceRecognitionModule(backbone=backbone, head=AdaFace(s=16.0), num_classes=8)


def _buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.named_buffers()}


def test_scoring_pass_changes_no_statistic_and_records_no_graph() -> None:
    torch.manual_seed(0)
    module = _adaface_module().train()
    images, labels = torch.randn(8, 3, 56, 56), torch.arange(8)
    before = _buffers(module)
    assert any("running_mean" in k for k in before) and {"head.batch_mean", "head.batch_std"} <= set(before)
    out = scoring_pass(module.backbone, module.criterion, images, labels)
    after = _buffers(module)
    for key, value in before.items():
        assert torch.equal(after[key], value), f"scoring pass changed {key}"
    assert not out.per_sample_loss.requires_grad and not out.logits.requires_grad
    # Margin-free logits: s·cos, and the loss is their cross-entropy.
    torch.testing.assert_close(out.logits, 16.0 * out.cosine.float().clamp(-1 + 1e-6, 1 - 1e-6))
    torch.testing.assert_close(out.per_sample_loss, torch.nn.functional.cross_entropy(out.logits, labels, reduction="none"))
    # A training pass of the same batch does change them (so the check above can fail).
    train = training_pass(module.backbone, module.criterion, images, labels)
    assert train.per_sample_loss.requires_grad
    changed = _buffers(module)
    assert not torch.equal(changed["head.batch_mean"], before["head.batch_mean"])
    assert any(not torch.equal(changed[k], before[k]) for k in before if "running_mean" in k)


def test_coteaching_selection_leaves_both_peers_statistics_unchanged() -> None:
    module, method = _adaface_module(), CoTeaching(ramp=0)
    module.attach_methods([method])
    before = _buffers(module)
    batch = FaceBatch(images=torch.randn(8, 3, 56, 56), labels=torch.arange(8))
    scores = method.score(module, batch.images, batch.labels)
    assert scores.shape == (8,)
    after = _buffers(module)
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert any(k.startswith("method_modules.coteaching.backbone.") and "running_var" in k for k in before)


def test_views_are_selected_together_and_the_teacher_embeds_each_sample_once(tmp_path: Path) -> None:
    """lowres doubles the batch: coteaching keeps or drops both views; kd embeds each HR image once."""
    module = tiny_module()
    lowres, coteaching = LowRes(), CoTeaching(forget_rate=0.5, ramp=0)
    kd = KD(**SETTINGS["kd"](tmp_path))
    module.attach_methods([kd, coteaching, lowres])
    seen: list[int] = []
    kd.teacher.backbone.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    selected: list[torch.Tensor] = []
    original = coteaching.sample_weights

    def spy(ctx, mod):  # type: ignore[no-untyped-def]
        mask = original(ctx, mod)
        selected.append(mask)
        return mask

    coteaching.sample_weights = spy  # type: ignore[method-assign]
    trainer = tiny_trainer(tmp_path, callbacks=[lowres, coteaching, kd], max_steps=1, limit_val_batches=0)
    trainer.fit(module, tiny_data(batch_size=8))
    assert seen == [8]  # 16 rows (HR + LR views of 8 samples), 8 teacher embeddings
    (mask,) = selected
    assert mask.shape == (16,) and torch.equal(mask[:8], mask[8:]) and int(mask[:8].sum()) == 4


# ------------------------------------------------------------ config stacking
def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_compose_appends_callbacks_and_expands_extends(tmp_path: Path) -> None:
    cb = lambda name: {"class_path": f"x.{name}"}  # noqa: E731
    base = _write(tmp_path / "base.yaml", {"trainer": {"max_epochs": 1}})
    a = _write(tmp_path / "a.yaml", {"trainer": {"callbacks": [cb("A")]}})
    b = _write(tmp_path / "b.yaml", {"trainer": {"callbacks": [cb("B")], "max_epochs": 2}})
    recipe = _write(tmp_path / "r.yaml", {"extends": ["base.yaml", "a.yaml"], "trainer": {"callbacks": [cb("C")]}})
    out = compose(["fit", "--config", str(recipe), "--config", str(b), "--trainer.callbacks+=x.D"])
    assert out.files == [base, a, recipe, b]
    configs = [out.argv[i + 1] for i, arg in enumerate(out.argv) if arg == "--config"]
    assert configs[:2] == [str(base), str(a)]  # unchanged files go by path
    third, fourth = yaml.safe_load(configs[2]), yaml.safe_load(configs[3])
    assert "extends" not in third
    assert third["trainer"]["callbacks"] == [cb("A"), cb("C")]
    assert fourth["trainer"]["callbacks"] == [cb("A"), cb("C"), cb("B")] and fourth["trainer"]["max_epochs"] == 2
    assert out.argv[0] == "fit" and out.argv[-1] == "--trainer.callbacks+=x.D"
    files = compose_files([recipe, b])
    assert [p for p, _ in files] == [base, a, recipe, b]
    assert files[-1][1]["trainer"]["callbacks"] == [cb("A"), cb("C"), cb("B")] and "extends" not in files[2][1]
    _write(tmp_path / "loop.yaml", {"extends": "loop.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        compose(["--config", str(tmp_path / "loop.yaml")])
    _write(tmp_path / "gone.yaml", {"extends": ["missing.yaml"]})
    with pytest.raises(ValueError, match=r"gone\.yaml.*missing\.yaml"):
        compose(["--config", str(tmp_path / "gone.yaml")])


def test_two_fragments_on_the_command_line_stack_both_methods(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--config", str(ROOT / "recipes" / "arcface.yaml"),
        "--config", str(ROOT / "configs" / "methods" / "lowres.yaml"),
        "--config", str(ROOT / "configs" / "methods" / "kd.yaml"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--print_config", *args])
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    paths = [c["class_path"] for c in printed["trainer"]["callbacks"]]
    assert paths == ["fr_lightning.methods.LowRes", "fr_lightning.methods.KD"]

    # --trainer.callbacks+= still appends, and init_args reach the last callback (kd).
    cli = cli_main([*args, "--trainer.logger=false", "--trainer.callbacks+=fr_lightning.methods.PoseFace"], run=False)
    names = [m.name for m in cli.trainer.callbacks if isinstance(m, Method)]
    assert names == ["lowres", "kd", "poseface"]
    assert [Path(p).name for p in cli.config["config"]] == ["arcface.yaml", "lowres.yaml", "kd.yaml"]  # as given
    cli = cli_main([*args, "--trainer.logger=false", "--trainer.callbacks.init_args.teacher=t.ckpt"], run=False)
    kd = next(m for m in cli.trainer.callbacks if isinstance(m, KD))
    assert kd.teacher_path == "t.ckpt"
