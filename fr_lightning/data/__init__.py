"""Data: byte formats (:mod:`.formats`), training/verification sources (:mod:`.sources`), the data module.

The names below are the data layer's public API, all importable from here
(``from fr_lightning.data import load_bin``), which is the import to prefer. Modules elsewhere
also import a submodule directly where that is all they need (``data.pairs``, ``data.formats.wds``,
``convert`` and ``verify`` for the ``fr data`` commands); the face renderer,
``fr_lightning.data.synthetic``, is deliberately not re-exported, so reading real data never
loads it.
"""

from fr_lightning.data.align import TEMPLATE_112, align_face, similarity_transform, template, transform_points
from fr_lightning.data.datamodule import FaceDataModule
from fr_lightning.data.dual_loaders import DualLoaders
from fr_lightning.data.errors import DataFormatError
from fr_lightning.data.formats import (
    RecordIOReader,
    RecordIOSet,
    RecordIOWriter,
    WdsWriter,
    decode_image,
    decode_pairs,
    encode_image,
    load_bin,
    read_shard_index,
    write_bin,
    write_recordio,
    write_recordio_encoded,
)
from fr_lightning.data.noise import LabelNoise, pairflip_noise, symmetric_noise
from fr_lightning.data.pairs import PairImages, PairSet
from fr_lightning.data.sources import (
    BinPairs,
    DaliSource,
    FaceSet,
    FolderSource,
    LoaderSpec,
    MapSource,
    RecordIOSource,
    SkipCounter,
    SyntheticPairs,
    SyntheticSource,
    TrainSource,
    ValSource,
    WdsDataset,
    WdsSource,
    default_val_sets,
    group_val_sets,
    load_side_file,
    scan_folder,
)
from fr_lightning.data.transforms import Augment, normalize_images, resize_face

__all__ = [
    "Augment",
    "BinPairs",
    "DaliSource",
    "DataFormatError",
    "DualLoaders",
    "FaceDataModule",
    "FaceSet",
    "FolderSource",
    "LabelNoise",
    "LoaderSpec",
    "MapSource",
    "PairImages",
    "PairSet",
    "RecordIOReader",
    "RecordIOSet",
    "RecordIOSource",
    "RecordIOWriter",
    "SkipCounter",
    "SyntheticPairs",
    "SyntheticSource",
    "TEMPLATE_112",
    "TrainSource",
    "ValSource",
    "WdsDataset",
    "WdsSource",
    "WdsWriter",
    "align_face",
    "decode_image",
    "decode_pairs",
    "default_val_sets",
    "encode_image",
    "group_val_sets",
    "load_bin",
    "load_side_file",
    "normalize_images",
    "pairflip_noise",
    "read_shard_index",
    "resize_face",
    "scan_folder",
    "similarity_transform",
    "symmetric_noise",
    "template",
    "transform_points",
    "write_bin",
    "write_recordio",
    "write_recordio_encoded",
]
