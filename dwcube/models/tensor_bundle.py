"""Read TensorFlow checkpoint tensor bundles without TensorFlow.

A SavedModel keeps its variables in a *tensor bundle*: ``variables.index`` is a
LevelDB-style sorted string table (SSTable) whose values are ``BundleEntryProto``
messages, and ``variables.data-NNNNN-of-MMMMM`` holds the raw little-endian tensor
bytes they point to.  The special key ``_CHECKPOINTABLE_OBJECT_GRAPH`` stores a
``TrackableObjectGraph`` whose nodes give each variable's checkpoint key
(``variables/17/.ATTRIBUTES/VARIABLE_VALUE``); the same node in ``saved_model.pb``'s
``SavedObjectGraph`` gives its TensorFlow name (``batch_normalization_3/gamma``).

Only what a read needs is implemented: tables with uncompressed or Snappy-compressed
blocks (TensorFlow compresses bundle indices with Snappy; a small decoder is included),
whole (unsliced) tensors of numeric dtypes plus the scalar string holding the object
graph, and the checksums TensorFlow stores (per index block and per tensor), which are
checked on every read.

Examples
--------
The Dynamic World SavedModels (in ``shared/dynamicworld``; skipped where it is absent):

>>> from dwcube.testing import require_shared
>>> forward = require_shared("dynamicworld") / "dynamicworld" / "model" / "forward"
>>> read_saved_model(forward).variables["conv2d/kernel"].shape
(3, 3, 9, 64)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BundleError", "SavedModelVariables", "TensorBundle", "crc32c", "read_saved_model", "read_sstable"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # compression type byte + masked crc32c
_OBJECT_GRAPH_KEY = b"_CHECKPOINTABLE_OBJECT_GRAPH"
_DT_STRING = 7

# tensorflow/core/framework/types.proto -> numpy little-endian dtypes
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}


class BundleError(ValueError):
    """A tensor bundle is malformed, truncated, uses an unsupported feature, or fails its CRC."""


# --- CRC32C (Castagnoli), as TensorFlow stores it -------------------------------------------
def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78
    table = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(table[k - 1, i])
            table[k, i] = (prev >> 8) ^ int(table[0, prev & 0xFF])
    return table


_CRC_TABLE = _crc32c_table()
_CRC_T = [list(map(int, row)) for row in _CRC_TABLE]


def crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc``.

    Slicing-by-8 in pure Python: about 10 MB/s, plenty for checkpoints of a few MB.

    Examples
    --------
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    t0, t1, t2, t3, t4, t5, t6, t7 = _CRC_T
    crc ^= 0xFFFFFFFF
    mv = memoryview(data).cast("B")
    n8 = len(mv) // 8 * 8
    if n8:
        words = struct.unpack(f"<{n8 // 4}I", mv[:n8])
        for i in range(0, len(words), 2):
            lo = words[i] ^ crc
            hi = words[i + 1]
            crc = (t7[lo & 0xFF] ^ t6[(lo >> 8) & 0xFF] ^ t5[(lo >> 16) & 0xFF] ^ t4[lo >> 24]
                   ^ t3[hi & 0xFF] ^ t2[(hi >> 8) & 0xFF] ^ t1[(hi >> 16) & 0xFF] ^ t0[hi >> 24])
    for b in mv[n8:]:
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _snappy_decompress(buf: bytes) -> bytes:
    """Decode one raw Snappy block (the format LevelDB tables use for compressed blocks)."""
    n, pos = _varint(buf, 0)
    out = bytearray()
    try:
        while pos < len(buf):
            tag = buf[pos]
            pos += 1
            kind = tag & 3
            if kind == 0:  # literal
                length = tag >> 2
                if length >= 60:
                    nb = length - 59
                    length = int.from_bytes(buf[pos:pos + nb], "little")
                    pos += nb
                length += 1
                out += buf[pos:pos + length]
                pos += length
                continue
            if kind == 1:
                length = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | buf[pos]
                pos += 1
            elif kind == 2:
                length = (tag >> 2) + 1
                offset = int.from_bytes(buf[pos:pos + 2], "little")
                pos += 2
            else:
                length = (tag >> 2) + 1
                offset = int.from_bytes(buf[pos:pos + 4], "little")
                pos += 4
            if offset == 0 or offset > len(out):
                raise BundleError("corrupt Snappy block (bad copy offset)")
            start = len(out) - offset
            for i in range(length):  # copies may overlap their own output
                out.append(out[start + i])
    except IndexError as exc:
        raise BundleError("truncated Snappy block") from exc
    if len(out) != n:
        raise BundleError("corrupt Snappy block (wrong decoded length)")
    return bytes(out)


def _unmask_crc(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- protobuf wire format (just enough) ----------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BundleError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field_number, value)`` of a protobuf message; length-delimited values are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        yield field, value


# --- SSTable --------------------------------------------------------------------------------
def _block_entries(table: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    if offset + size + _BLOCK_TRAILER > len(table):
        raise BundleError("block runs past the end of the index file (truncated?)")
    block = table[offset:offset + size]
    ctype = table[offset + size]
    (stored,) = struct.unpack_from("<I", table, offset + size + 1)
    if crc32c(table[offset:offset + size + 1]) != _unmask_crc(stored):
        raise BundleError("index block checksum mismatch (corrupted index file)")
    if ctype == 1:
        block = _snappy_decompress(block)
    elif ctype != 0:
        raise BundleError(f"index block compression type {ctype} is not supported")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + vlen]
        pos += vlen


def read_sstable(path: str | Path) -> dict[bytes, bytes]:
    """All key/value pairs of an uncompressed LevelDB-format table (a bundle's ``.index``).

    Examples
    --------
    >>> from dwcube.testing import require_shared
    >>> model = require_shared("dynamicworld") / "dynamicworld" / "model"
    >>> table = read_sstable(model / "forward" / "variables" / "variables.index")
    >>> b"" in table, len(table)   # the bundle header, then one entry per tensor
    (True, 148)
    """
    data = Path(path).read_bytes()
    if len(data) < _FOOTER_SIZE:
        raise BundleError(f"{path}: too short to be a tensor bundle index")
    footer = data[-_FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != _TABLE_MAGIC:
        raise BundleError(f"{path}: not a TensorFlow table (bad magic number)")
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    out: dict[bytes, bytes] = {}
    for _, handle in _block_entries(data, index_off, index_size):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        out.update(_block_entries(data, off, size))
    return out


# --- bundle ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives in the data shards (a decoded ``BundleEntryProto``)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None

    @classmethod
    def parse(cls, raw: bytes, key: str) -> BundleEntry:
        dtype_enum, shape, shard, offset, size, crc = 0, (), 0, 0, 0, None
        for field, value in _fields(raw):
            if field == 1:
                dtype_enum = int(value)
            elif field == 2:
                dims = []
                for f, v in _fields(value):  # TensorShapeProto
                    if f == 2:
                        dims.append(next((int(s) for g, s in _fields(v) if g == 1), 0))
                    elif f == 3 and v:
                        raise BundleError(f"{key}: tensor of unknown rank")
                shape = tuple(dims)
            elif field == 3:
                shard = int(value)
            elif field == 4:
                offset = int(value)
            elif field == 5:
                size = int(value)
            elif field == 6:
                crc = int(value)
            elif field == 7:
                raise BundleError(f"{key}: partitioned (sliced) variables are not supported")
        if dtype_enum == _DT_STRING:
            return cls(np.dtype(object), shape, shard, offset, size, crc)
        if dtype_enum not in _DTYPES:
            raise BundleError(f"{key}: unsupported tensor dtype enum {dtype_enum}")
        return cls(_DTYPES[dtype_enum], shape, shard, offset, size, crc)


class TensorBundle:
    """A TensorFlow tensor bundle (``<prefix>.index`` + ``<prefix>.data-*``), read with NumPy.

    Parameters
    ----------
    prefix
        Path without suffix, e.g. ``saved_model_dir/variables/variables``.

    Examples
    --------
    >>> from dwcube.testing import require_shared
    >>> model = require_shared("dynamicworld") / "dynamicworld" / "model"
    >>> b = TensorBundle(model / "forward" / "variables" / "variables")
    >>> b.read("variables/0/.ATTRIBUTES/VARIABLE_VALUE").shape
    (3, 3, 9, 64)
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        index = self.prefix.with_name(self.prefix.name + ".index")
        if not index.is_file():
            raise BundleError(f"no tensor bundle index at {index}")
        self._table = read_sstable(index)
        header = self._table.get(b"")
        if header is None:
            raise BundleError(f"{index}: no bundle header")
        self.num_shards = 1
        for field, value in _fields(header):
            if field == 1:
                self.num_shards = int(value)
            elif field == 2 and value != 0:
                raise BundleError(f"{index}: big-endian bundles are not supported")
        self._shards: dict[int, bytes] = {}

    def keys(self) -> list[str]:
        """Checkpoint keys of all tensors, sorted (the header key excluded)."""
        return [k.decode() for k in self._table if k]

    def _shard(self, i: int) -> bytes:
        if i not in self._shards:
            path = self.prefix.with_name(f"{self.prefix.name}.data-{i:05d}-of-{self.num_shards:05d}")
            if not path.is_file():
                raise BundleError(f"missing data shard {path}")
            self._shards[i] = path.read_bytes()
        return self._shards[i]

    def read(self, key: str) -> np.ndarray:
        """The tensor stored under checkpoint ``key``, CRC-checked, as a fresh NumPy array."""
        raw = self._table.get(key.encode())
        if raw is None:
            raise KeyError(f"no tensor {key!r} in {self.prefix}")
        entry = BundleEntry.parse(raw, key)
        buf = self._shard(entry.shard)
        if entry.offset + entry.size > len(buf):
            raise BundleError(f"{key}: data shard is truncated")
        chunk = memoryview(buf)[entry.offset:entry.offset + entry.size]
        if entry.dtype == object:
            out, crc = _string_tensor(bytes(chunk), entry.shape, key)
        else:
            out, crc = None, crc32c(chunk)
        if entry.crc32c is not None and crc != _unmask_crc(entry.crc32c):
            raise BundleError(f"{key}: tensor data fails its CRC32C (corrupted data file)")
        if out is not None:
            return out
        expected = int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize
        if expected != entry.size:
            raise BundleError(f"{key}: {entry.size} bytes for shape {entry.shape} of {entry.dtype}")
        return np.frombuffer(chunk, dtype=entry.dtype).reshape(entry.shape).copy()

    def object_graph(self) -> list[bytes]:
        """The serialized nodes of the bundle's ``TrackableObjectGraph``."""
        if _OBJECT_GRAPH_KEY not in self._table:
            raise BundleError(f"{self.prefix}: no object graph in the bundle")
        blob = self.read(_OBJECT_GRAPH_KEY.decode()).item()
        return [node for field, node in _fields(blob) if field == 1]


@dataclass(frozen=True)
class SavedModelVariables:
    """The variables of a SavedModel under their TensorFlow names, and its Keras metadata.

    Attributes
    ----------
    variables
        ``{name: array}``, names as TensorFlow gave them (``conv2d_3/kernel``).
    keras_metadata
        The root object's Keras metadata (the model config), parsed from JSON;
        empty when the SavedModel was not written by Keras.
    """

    variables: dict[str, np.ndarray]
    keras_metadata: dict


def read_saved_model(directory: str | Path) -> SavedModelVariables:
    """Read a TensorFlow SavedModel's variables, named, without TensorFlow.

    The variable names live in ``saved_model.pb`` (``SavedObjectGraph``, one
    ``SavedVariable.name`` per variable node) and the values in the tensor bundle, whose
    ``TrackableObjectGraph`` uses the same node ids and gives each node's checkpoint key.
    Every value is checked against its CRC32C and its declared shape.

    Parameters
    ----------
    directory
        The SavedModel folder (holding ``saved_model.pb`` and ``variables/``).

    Examples
    --------
    >>> from dwcube.testing import require_shared
    >>> sm = read_saved_model(require_shared("dynamicworld") / "dynamicworld" / "model" / "forward")
    >>> sm.variables["conv2d_14/kernel"].shape, len(sm.variables)
    ((1, 1, 144, 9), 146)
    """
    directory = Path(directory)
    pb_path = directory / "saved_model.pb"
    if not pb_path.is_file():
        raise BundleError(f"no saved_model.pb in {directory}")
    pb = pb_path.read_bytes()
    meta_graphs = [v for f, v in _fields(pb) if f == 2]
    if not meta_graphs:
        raise BundleError(f"{pb_path}: no meta graph")
    graphs = [v for f, v in _fields(meta_graphs[0]) if f == 7]
    if not graphs:
        raise BundleError(f"{pb_path}: no object graph (TF1-style SavedModels are not supported)")
    saved_nodes = [v for f, v in _fields(graphs[0]) if f == 1]

    bundle = TensorBundle(directory / "variables" / "variables")
    ckpt_nodes = bundle.object_graph()
    if len(ckpt_nodes) > len(saved_nodes):
        raise BundleError(f"{directory}: checkpoint and saved_model.pb object graphs disagree")

    variables: dict[str, np.ndarray] = {}
    metadata: dict = {}
    for i, node in enumerate(saved_nodes):
        parts: dict[int, list] = {}
        for f, v in _fields(node):
            parts.setdefault(f, []).append(v)
        if i == 0 and 4 in parts:  # root user object: Keras metadata JSON
            user = {g: x for g, x in _fields(parts[4][0])}
            if user.get(3):
                metadata = json.loads(user[3])
        if 7 not in parts:
            continue
        var = {g: x for g, x in _fields(parts[7][0])}
        name = var.get(6, b"").decode()
        shape = tuple(
            next((int(s) for g, s in _fields(d) if g == 1), 0)
            for f, d in _fields(var.get(2, b"")) if f == 2
        )
        if i >= len(ckpt_nodes):
            raise BundleError(f"{directory}: variable {name!r} has no checkpoint node")
        keys = [
            {g: x for g, x in _fields(attr)}.get(3, b"").decode()
            for f, attr in _fields(ckpt_nodes[i]) if f == 2
        ]
        if len(keys) != 1 or not keys[0]:
            raise BundleError(f"{directory}: variable {name!r} has no checkpoint key")
        value = bundle.read(keys[0])
        if value.shape != shape:
            raise BundleError(f"{name}: stored shape {value.shape} differs from declared {shape}")
        if name in variables:
            raise BundleError(f"{directory}: variable name {name!r} appears twice")
        variables[name] = value
    if not variables:
        raise BundleError(f"{directory}: the SavedModel has no variables")
    return SavedModelVariables(variables, metadata)


def _string_tensor(buf: bytes, shape: tuple[int, ...], key: str) -> tuple[np.ndarray, int]:
    """Decode a string tensor and its CRC32C as TensorFlow computes it.

    On disk: varint64 lengths, the masked CRC32C of those lengths (each as 4-byte
    little-endian, 8 bytes above 2**32-1), then the string bytes. The tensor's checksum
    runs over the lengths so encoded, the 4 checksum bytes and the strings.
    """
    count = int(np.prod(shape, dtype=np.int64))
    lengths, pos, crc = [], 0, 0
    for _ in range(count):
        n, pos = _varint(buf, pos)
        lengths.append(n)
        crc = crc32c(struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n), crc)
    (stored,) = struct.unpack_from("<I", buf, pos)
    if _unmask_crc(stored) != crc:
        raise BundleError(f"{key}: string lengths fail their checksum")
    crc = crc32c(buf[pos:], crc)
    pos += 4
    if pos + sum(lengths) != len(buf):
        raise BundleError(f"{key}: malformed string tensor")
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        out[i] = buf[pos:pos + n]
        pos += n
    return out.reshape(shape), crc
