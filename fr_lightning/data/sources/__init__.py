"""Pluggable data sources: one module per kind, each a Source (typed ``__init__``, YAML-selectable) and its Dataset.

The contract every source keeps is in :mod:`.base` (:class:`TrainSource`, :class:`MapSource`,
:class:`FaceSet`, :class:`LoaderSpec`, :class:`ValSource`).

* :mod:`.synthetic`: the built-in renderer (default; imported lazily);
* :mod:`.recordio`: insightface ``train.rec/.idx/property``;
* :mod:`.folder`: one sub-folder per identity, or a ``path label`` list;
* :mod:`.wds`: WebDataset tar shards, streamed (local or fsspec URIs);
* :mod:`.dali`: NVIDIA DALI GPU pipeline (optional, untested here);
* :mod:`.binpairs`: ``.bin`` verification sets.
"""

from fr_lightning.data.sources.base import FaceSet, LoaderSpec, MapSource, TrainSource, ValSource
from fr_lightning.data.sources.binpairs import BinPairs
from fr_lightning.data.sources.dali import DaliSource
from fr_lightning.data.sources.folder import FolderFaces, FolderIndex, FolderSource, scan_folder
from fr_lightning.data.sources.recordio import RecordIOFaces, RecordIOSource
from fr_lightning.data.sources.samples import FaceSamples, SkipCounter
from fr_lightning.data.sources.side_files import load_side_file
from fr_lightning.data.sources.synthetic import SyntheticPairs, SyntheticSource, default_val_sets, group_val_sets
from fr_lightning.data.sources.wds import WdsDataset, WdsSource

__all__ = [
    "BinPairs",
    "DaliSource",
    "FaceSamples",
    "FaceSet",
    "FolderFaces",
    "FolderIndex",
    "FolderSource",
    "LoaderSpec",
    "MapSource",
    "RecordIOFaces",
    "RecordIOSource",
    "SkipCounter",
    "SyntheticPairs",
    "SyntheticSource",
    "TrainSource",
    "ValSource",
    "WdsDataset",
    "WdsSource",
    "default_val_sets",
    "group_val_sets",
    "load_side_file",
    "scan_folder",
]
