"""The data-source contract: every training source through every loader mode, and F²C on real formats.

Sources come from the package's list (every :class:`TrainSource` that ``fr_lightning.data.sources``
exports must have a fixture here), so a new source is tested by being added. Loader modes: the
plain training loader, label noise and F²C's dual loaders (a map-style source serves all three;
a streaming one serves the first and refuses the others with the option named). The small sets
(RecordIO, image folder, WebDataset shards) are written by the tests themselves.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import fr_lightning.data.sources as sources
from fr_lightning.batch import FaceBatch
from fr_lightning.classifiers import F2C
from fr_lightning.data import (
    DaliSource,
    DualLoaders,
    FaceDataModule,
    FaceSet,
    FolderSource,
    LabelNoise,
    LoaderSpec,
    MapSource,
    RecordIOSource,
    SkipCounter,
    SyntheticSource,
    TrainSource,
    WdsSource,
    WdsWriter,
    encode_image,
    write_recordio,
)
from fr_lightning.data.dual_loaders import DualLoaderDataset
from tests.helpers import tiny_module, tiny_trainer

SIZE = 16  # px of the images written to disk (the data module resizes them)
CLASSES, PER_CLASS = 4, 4
HAS_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _labels() -> list[int]:
    return [c for c in range(CLASSES) for _ in range(PER_CLASS)]  # sorted: RecordIO wants that


def _recordio(root: Path, skip_corrupt: bool = False) -> RecordIOSource:
    write_recordio(root, ((_image(i), y) for i, y in enumerate(_labels())), num_classes=CLASSES, img_fmt=".png")
    return RecordIOSource(str(root), skip_corrupt=skip_corrupt)


def _folder(root: Path, skip_corrupt: bool = False) -> FolderSource:
    for i, y in enumerate(_labels()):
        (root / f"id{y}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f"id{y}" / f"{i:03d}.png"), _image(i)[:, :, ::-1])
    return FolderSource(str(root), skip_corrupt=skip_corrupt)


def _wds(root: Path, skip_corrupt: bool = False) -> WdsSource:
    with WdsWriter(root, CLASSES, (SIZE, SIZE), max_count=5) as writer:
        for i, y in enumerate(_labels()):
            writer.add(encode_image(_image(i), img_fmt=".png"), y)
    return WdsSource(str(root), shuffle_buffer=4, skip_corrupt=skip_corrupt)


def _synthetic(root: Path, skip_corrupt: bool = False) -> SyntheticSource:
    return SyntheticSource(num_identities=CLASSES, samples_per_identity=PER_CLASS)


def _dali(root: Path, skip_corrupt: bool = False) -> DaliSource:
    _recordio(root)
    return DaliSource(str(root))


#: One fixture per training source the package exports.
SOURCES: dict[type[TrainSource], Callable[..., TrainSource]] = {
    SyntheticSource: _synthetic,
    RecordIOSource: _recordio,
    FolderSource: _folder,
    WdsSource: _wds,
    DaliSource: _dali,
}
MODES = ("plain", "label_noise", "dual_loaders")


def _source_params() -> list[object]:
    return [
        pytest.param(cls, id=cls.__name__, marks=[pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali and a GPU")] if cls is DaliSource else [])
        for cls in SOURCES
    ]


def _data(source: TrainSource, mode: str, batch_size: int = 4, image_size: int = 24) -> FaceDataModule:
    return FaceDataModule(
        train=source,
        val_sets=[],
        image_size=image_size,
        batch_size=batch_size,
        num_workers=0,
        hflip=False,
        label_noise=LabelNoise(rate=0.5) if mode == "label_noise" else None,
        dual_loaders=DualLoaders() if mode == "dual_loaders" else None,
    )


def test_every_exported_training_source_has_a_fixture() -> None:
    exported = {obj for name in sources.__all__ if isinstance(obj := getattr(sources, name), type) and issubclass(obj, TrainSource)}
    concrete = {cls for cls in exported if not getattr(cls, "__abstractmethods__", None)}
    assert concrete == set(SOURCES), f"add a fixture to SOURCES for {sorted(c.__name__ for c in concrete - set(SOURCES))}"
    assert {SyntheticSource, RecordIOSource, FolderSource} <= {c for c in concrete if issubclass(c, MapSource)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", _source_params())
def test_every_source_through_every_loader_mode(cls: type[TrainSource], mode: str, tmp_path: Path) -> None:
    source = SOURCES[cls](tmp_path)
    data = _data(source, mode)
    assert data.num_classes == CLASSES
    if mode != "plain" and not isinstance(source, MapSource):
        with pytest.raises(ValueError, match=f"data.{mode} needs a map-style training source.*{cls.__name__} streams"):
            data.setup("fit")
        return
    data.setup("fit")
    assert (data.train_set is not None) == isinstance(source, MapSource)
    loader = data.train_dataloader()
    batches = list(loader)
    assert batches and all(isinstance(b, FaceBatch) for b in batches)
    samples = CLASSES * PER_CLASS
    if mode == "dual_loaders":
        # Items of one instance pair + two identity pairs, batched [x; y]: 4 items = 24 rows.
        assert isinstance(data.train_set, DualLoaderDataset) and len(batches) == (samples // 2) // 4
        batch = batches[0]
        assert batch.images.shape == (24, 3, 24, 24)
        x, y = batch.labels[:12], batch.labels[12:]
        identity_rows = [r for item in range(4) for r in (3 * item, 3 * item + 1)]
        assert torch.equal(x[identity_rows], y[identity_rows])  # two images of one identity
        return
    assert len(batches) == samples // 4 and batches[0].images.shape == (4, 3, 24, 24)
    seen = torch.cat([b.index for b in batches])
    assert len(set(seen.tolist())) == samples  # one epoch visits every sample once
    if mode == "label_noise":
        assert all(b.clean_labels is not None for b in batches)
        noisy = torch.cat([b.labels != b.clean_labels for b in batches])
        assert int(noisy.sum()) == samples // 2
    else:
        assert batches[0].clean_labels is None


@pytest.mark.parametrize("cls", [RecordIOSource, FolderSource, SyntheticSource])
def test_map_style_sets_list_the_labels_they_serve(cls: type[MapSource], tmp_path: Path) -> None:
    source = SOURCES[cls](tmp_path)
    dataset = source.dataset(24, hflip=False)  # type: ignore[attr-defined]
    assert isinstance(dataset, FaceSet) and len(dataset.labels) == len(dataset) == CLASSES * PER_CLASS
    assert [dataset[i]["labels"] for i in range(len(dataset))] == dataset.labels.tolist()
    # The bug this contract fixed: the dual loaders could not see a RecordIO or folder set's labels.
    dual = DualLoaders().wrap(dataset, seed=0)
    x, y = dual.indices(0)
    assert dataset.labels[x[0]] == dataset.labels[y[0]]


@pytest.mark.parametrize("cls", [RecordIOSource, FolderSource, WdsSource])
def test_skip_counter_is_declared_and_shared_with_the_data_module(cls: type[TrainSource], tmp_path: Path) -> None:
    assert SOURCES[cls](tmp_path / "strict").skip_counter is None
    assert SyntheticSource().skip_counter is None
    source = SOURCES[cls](tmp_path / "lenient", skip_corrupt=True)
    counter = source.skip_counter
    assert isinstance(counter, SkipCounter) and source.skip_counter is counter
    data = _data(source, "plain")
    data.setup("fit")
    counter.add(2)
    assert data.skipped == 2
    assert _data(SOURCES[cls](tmp_path / "strict"), "plain").skipped is None


def test_a_stream_refuses_a_map_style_set(tmp_path: Path) -> None:
    stream = _wds(tmp_path / "wds")
    dataset = _synthetic(tmp_path).dataset(24, hflip=False)
    with pytest.raises(ValueError, match="WdsSource streams its samples"):
        stream.loader(LoaderSpec(batch_size=4, image_size=24), dataset)


# ----------------------------------------------------------------- F²C on the real formats
@pytest.mark.slow  # 1-7 s each on the shared 2-core machine (a 2-step fit)
@pytest.mark.parametrize("cls", [RecordIOSource, FolderSource, WdsSource])
def test_f2c_trains_two_steps(cls: type[TrainSource], tmp_path: Path) -> None:
    source = SOURCES[cls](tmp_path)
    dual = isinstance(source, MapSource)  # F²C's dual loaders on map-style sets; the stream's halves otherwise
    data = _data(source, "dual_loaders" if dual else "plain", batch_size=2 if dual else 8, image_size=56)
    module = tiny_module(num_classes=CLASSES, classifier=lambda d, c: F2C(d, c, capacity=8))
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, data)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert len(module.classifier.lru) > 0 and module.classifier.gallery is not None
    assert module._ddp_params_and_buffers_to_ignore == ["classifier.pool"]
