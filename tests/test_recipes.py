"""Every recipe parses and runs one training + one validation batch on CPU (fast_dev_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fr_lightning.cli import cli_main
from fr_lightning.methods import KD

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# Shrink the data so a recipe's fast_dev_run takes seconds, whatever its real size.
SMALL = [
    "--trainer.fast_dev_run=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.batch_size=8",
    "--data.init_args.val_batch_size=16",
    "--data.init_args.num_workers=0",
]


def _kd_teacher(tmp_path: Path, recipe: str = "kd") -> list[str]:
    """A random-weight teacher checkpoint with the recipe's teacher architecture and identities."""
    cli = cli_main(["--config", str(ROOT / "recipes" / f"{recipe}.yaml"), "--trainer.logger=false"], run=False)
    kd = next(cb for cb in cli.trainer.callbacks if isinstance(cb, KD))
    backbone = kd.teacher_backbone
    assert backbone is not None
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["classifier.weight"] = torch.randn(cli.datamodule.num_classes, int(backbone.embedding_dim))
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": state}, path)
    return [f"--trainer.callbacks.init_args.teacher={path}"]


def _finetune(tmp_path: Path) -> list[str]:
    """recipes/finetune.yaml at a tiny size: its iResNet-50 at width 1/8 on 56 px, a backbone.pth of
    that shape written by the insightface transcription in tests/test_init_from.py, a small RecordIO set."""
    from fr_lightning.cli.data import main as data_main
    from tests.test_init_from import RefIResNet

    data_main(["synth", str(tmp_path / "data"), "--identities", "5", "--per-identity", "4", "--image-size", "56", "--pairs", "20"])
    torch.manual_seed(0)
    torch.save(RefIResNet([3, 4, 14, 3], base=8, num_features=32, input_size=56).state_dict(), tmp_path / "backbone.pth")
    return [
        f"--model.init_args.init_from={tmp_path / 'backbone.pth'}",
        "--model.init_args.backbone.init_args.width=0.125",
        "--model.init_args.backbone.init_args.embedding_dim=32",
        "--data.init_args.image_size=56",
        f"--data.init_args.train.init_args.root={tmp_path / 'data'}",
        f"--data.init_args.val_sets=[{{class_path: fr_lightning.data.BinPairs, init_args: {{path: {tmp_path / 'data' / 'synth-lfw.bin'}}}}}]",
    ]


#: Extra arguments a recipe needs to run (e.g. files it points to), built per test.
EXTRA_ARGS = {"kd": _kd_teacher, "lowres-kd": lambda tmp: _kd_teacher(tmp, "lowres-kd"), "finetune": _finetune}
#: Recipes whose data (not only a file read at fit time) must exist to build them.
PARSE_NEEDS_FILES = {"finetune"}


def test_recipe_list_is_not_empty() -> None:
    assert RECIPES, "no recipes found"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses(recipe: Path, tmp_path: Path) -> None:
    extra = EXTRA_ARGS[recipe.stem](tmp_path) if recipe.stem in PARSE_NEEDS_FILES else []
    cli = cli_main(["--config", str(recipe), "--trainer.logger=false", *extra], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert cli.model.num_classes == cli.datamodule.num_classes


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_fast_dev_run(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    extra = EXTRA_ARGS[recipe.stem](tmp_path) if recipe.stem in EXTRA_ARGS else []
    cli = cli_main(["fit", "--config", str(recipe), *SMALL, *extra])
    assert cli.trainer.state.finished
    assert "train/loss" in cli.trainer.callback_metrics


def test_triplet_recipe_checkpoint_holds_no_identity_sized_tensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """recipes/triplet.yaml trains with no classifier: no tensor of its saved checkpoint grows with the identities."""
    from fr_lightning.classifiers import NoClassifier

    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", str(ROOT / "recipes" / "triplet.yaml"), *SMALL])
    assert cli.trainer.state.finished and isinstance(cli.model.classifier, NoClassifier)
    path = tmp_path / "triplet.ckpt"
    cli.trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    n = cli.datamodule.num_classes
    assert n == 1500
    sized = [k for k, t in ckpt["state_dict"].items() if n in tuple(t.shape)]
    assert not sized, sized
    for state in ckpt["optimizer_states"]:
        for s in state["state"].values():
            assert all(n not in tuple(v.shape) for v in s.values() if isinstance(v, torch.Tensor))
