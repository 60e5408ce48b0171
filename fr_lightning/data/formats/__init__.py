"""Byte formats on disk, with no training logic: RecordIO, ``.bin`` verification sets, WebDataset shards.

Sources (:mod:`fr_lightning.data.sources`) turn these into training samples.
"""

from fr_lightning.data.formats.binfile import SafeBinUnpickler, decode_pairs, load_bin, write_bin
from fr_lightning.data.formats.images import decode_image, encode_image
from fr_lightning.data.formats.recordio import (
    HEADER_SIZE,
    MAGIC,
    RecordIOWriter,
    UnpackedRecord,
    pack_header,
    pack_image,
    unpack_header,
)
from fr_lightning.data.formats.recordio_reader import RecordIOReader
from fr_lightning.data.formats.recordio_set import RecordIOSet, parse_property
from fr_lightning.data.formats.recordio_write import write_recordio, write_recordio_encoded
from fr_lightning.data.formats.wds import ShardIndex, iter_shard, read_shard_index
from fr_lightning.data.formats.wds_write import WdsWriter

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "RecordIOReader",
    "RecordIOSet",
    "RecordIOWriter",
    "SafeBinUnpickler",
    "ShardIndex",
    "UnpackedRecord",
    "WdsWriter",
    "decode_image",
    "decode_pairs",
    "encode_image",
    "iter_shard",
    "load_bin",
    "pack_header",
    "pack_image",
    "parse_property",
    "read_shard_index",
    "unpack_header",
    "write_bin",
    "write_recordio",
    "write_recordio_encoded",
]
