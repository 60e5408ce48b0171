"""F²C's dual loaders: [x; y] batch layout, identity pairs, determinism, exact resume, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import IterableDataset

from fr_lightning.data import FaceDataModule, SyntheticSource
from fr_lightning.data.dual_loaders import DualLoaderDataset, DualLoaders


def _data(batch_size: int = 2, identity_pairs: int = 2) -> FaceDataModule:
    return FaceDataModule(
        train=SyntheticSource(num_identities=5, samples_per_identity=3),
        val_sets=[],
        image_size=32,
        batch_size=batch_size,
        num_workers=0,
        hflip=False,
        dual_loaders=DualLoaders(identity_pairs=identity_pairs),
    )


def test_batches_are_x_then_y_with_identity_pairs_first() -> None:
    data = _data()
    data.setup("fit")
    dataset = data.train_set
    assert isinstance(dataset, DualLoaderDataset) and len(dataset) == 15 // 2
    batch = next(iter(data.train_dataloader()))
    assert batch.images.shape == (12, 3, 32, 32) and batch.labels.shape == (12,)  # 2 items x (2 id + 1 instance) x 2 views
    x, y = batch.labels[:6], batch.labels[6:]
    identity_rows = [0, 1, 3, 4]
    assert torch.equal(x[identity_rows], y[identity_rows])
    # Two different images of each identity (every synthetic identity has 3).
    for i in identity_rows:
        assert not torch.equal(batch.images[i], batch.images[6 + i])
    # The instance rows are the seeded pairing of a permutation: every sample used at most once per epoch.
    seen = [i for item in range(len(dataset)) for i in (dataset.indices(item)[0][-1], dataset.indices(item)[1][-1])]
    assert len(set(seen)) == len(seen) == 14
    assert dataset.indices(3) == DualLoaderDataset(dataset.dataset, dataset.labels, 2, 0).indices(3)


def test_resumed_loader_continues_at_the_next_batch() -> None:
    data = _data()
    data.setup("fit")
    first = [b.labels for b in data.train_dataloader()]
    resumed = data.train_dataloader()
    resumed.load_state_dict({"epoch": 0, "batches": 1, "batch_size": 2, "seed": 0})
    again = [b.labels for b in resumed]
    assert len(first) == 3 and len(again) == 2
    assert all(torch.equal(a, b) for a, b in zip(again, first[1:]))


class _Stream(IterableDataset):
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([])


def test_unsuitable_training_sets_are_refused_with_the_option_named() -> None:
    with pytest.raises(ValueError, match="data.dual_loaders needs a map-style training set that lists its labels.*_Stream"):
        DualLoaders().wrap(_Stream())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data.dual_loaders needs a map-style training set that lists its labels.*TensorDataset"):
        DualLoaders().wrap(torch.utils.data.TensorDataset(torch.zeros(3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identity_pairs"):
        DualLoaders(identity_pairs=-1)
