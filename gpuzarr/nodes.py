"""Loading and saving node metadata (arrays and groups, v2 and v3) in a store."""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping
from typing import Any

from gpuzarr._memo import BoundedMemo
from gpuzarr.device import Device, resolve_device
from gpuzarr.errors import MetadataError, ReadOnlyError
from gpuzarr.metadata import (
    V2_ARRAY_KEY,
    V2_ATTRS_KEY,
    V2_CONSOLIDATED_KEY,
    V2_GROUP_KEY,
    V3_KEY,
    ArrayMetadata,
    ArrayMetadataV2,
    ArrayMetadataV3,
    GroupMetadata,
    json_dumps,
    parse_json,
)
from gpuzarr.stores import Store

__all__ = [
    "Node",
    "NodeMetadata",
    "join_path",
    "load_metadata",
    "metadata_from_consolidated",
    "normalize_path",
    "prefix_of",
    "save_metadata",
]

NodeMetadata = ArrayMetadata | GroupMetadata


def normalize_path(path: str | None) -> str:
    """A node path without leading/trailing slashes; ``""`` is the root."""
    if path is None:
        return ""
    if not isinstance(path, str):
        raise TypeError(f"node path must be a string, got {type(path).__name__}")
    parts = [p for p in path.strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"node path {path!r} may not contain '.' or '..' segments")
    return "/".join(parts)


def join_path(parent: str, name: str) -> str:
    """The path of ``name`` below ``parent``."""
    return normalize_path(posixpath.join(parent, normalize_path(name)) if parent else name)


def prefix_of(path: str) -> str:
    """The key prefix of the node at ``path``."""
    return f"{path}/" if path else ""


def load_metadata(store: Store, path: str) -> NodeMetadata | None:
    """Read and parse the metadata of the node at ``path`` (v3 first, then v2)."""
    prefix = prefix_of(path)
    raw = store.get(prefix + V3_KEY)
    if raw is not None:
        memo_key = _memo_key("3", raw)
        node = _parsed_array(memo_key)
        if node is None:
            node = _from_v3_document(parse_json(raw, prefix + V3_KEY), prefix + V3_KEY)
            _remember(memo_key, node)
        return node
    if store.cheap_reads:
        # One small file after another on this thread, only those the node needs: four
        # handed to pool threads cost more than they take to read (opening a v2 array
        # after a 50 ms pause, 2 cores: 0.59 ms so, 0.91 ms in a batch; a v3 one 0.56).
        zarray = store.get(prefix + V2_ARRAY_KEY)
        zgroup = None if zarray is not None else store.get(prefix + V2_GROUP_KEY)
        zattrs = store.get(prefix + V2_ATTRS_KEY) if zarray is not None or zgroup is not None else None
        zmeta = store.get(prefix + V2_CONSOLIDATED_KEY) if zgroup is not None else None
    else:  # (a round trip each: all four at once)
        keys = [prefix + k for k in (V2_ARRAY_KEY, V2_GROUP_KEY, V2_ATTRS_KEY, V2_CONSOLIDATED_KEY)]
        zarray, zgroup, zattrs, zmeta = store.get_many(keys)
    if zarray is not None:
        memo_key = _memo_key("2", zarray, zattrs)
        array = _parsed_array(memo_key)
        if array is None:
            attrs = parse_json(zattrs, prefix + V2_ATTRS_KEY) if zattrs is not None else {}
            array = ArrayMetadataV2.from_json(parse_json(zarray, prefix + V2_ARRAY_KEY), attrs, prefix + V2_ARRAY_KEY)
            _remember(memo_key, array)
        return array
    attrs = parse_json(zattrs, prefix + V2_ATTRS_KEY) if zattrs is not None else {}
    if zgroup is not None:
        doc = parse_json(zgroup, prefix + V2_GROUP_KEY)
        if doc.get("zarr_format") != 2:
            raise MetadataError(f"{prefix + V2_GROUP_KEY}: zarr_format must be 2")
        consolidated = None
        # .zmetadata sits in the group it consolidates (the root, as zarr-python
        # usually writes it, or any group consolidate_metadata(path=...) was run on).
        if zmeta is not None:
            key = prefix + V2_CONSOLIDATED_KEY
            consolidated = _v2_consolidated(parse_json(zmeta, key), key)
        return GroupMetadata(2, attrs, consolidated)
    return None


#: Array metadata parsed before, by the bytes of its documents: opening an array whose
#: documents are unchanged skips parsing them (and, as the same metadata object comes
#: back, building its codec chain: see gpuzarr.array), a few hundred microseconds of
#: a small read's open+read (measured 0.63 -> 0.23 ms per open between reads of 32
#: windows of 64 KiB). Metadata is immutable, but for its attributes dict, which a
#: caller could change in place: each entry keeps a copy of the attributes as parsed
#: and is used only while they still match it.
_PARSED_ARRAYS: BoundedMemo[tuple[Any, ...], tuple[ArrayMetadata, dict[str, Any]]] = BoundedMemo(64)

#: Documents larger than this are parsed anew each time rather than kept.
_MEMO_MAX_DOCUMENT_BYTES = 64 * 1024


def _memo_key(zarr_format: str, *documents: Any) -> tuple[Any, ...] | None:
    """The memo key of an array's metadata documents (raw bytes, None for one absent),
    or None where they are too large to keep."""
    if sum(memoryview(d).nbytes for d in documents if d is not None) > _MEMO_MAX_DOCUMENT_BYTES:
        return None  # (before any copy: a large group document is no array's)
    return (zarr_format, *(None if d is None else d if isinstance(d, bytes) else bytes(d) for d in documents))


def _parsed_array(memo_key: tuple[Any, ...] | None) -> ArrayMetadata | None:
    """The metadata parsed before from the documents of ``memo_key``, or None."""
    if memo_key is None:
        return None
    entry = _PARSED_ARRAYS.get(memo_key)
    if entry is None:
        return None
    metadata, parsed_attributes = entry
    if metadata.attributes != parsed_attributes:  # changed in place since: parse anew
        _PARSED_ARRAYS.discard(memo_key)
        return None
    return metadata


def _remember(memo_key: tuple[Any, ...] | None, node: NodeMetadata) -> None:
    """Keep the array metadata ``node`` parsed from the documents of ``memo_key``."""
    if memo_key is not None and isinstance(node, ArrayMetadata):
        _PARSED_ARRAYS.put(memo_key, (node, copy.deepcopy(node.attributes)))


def _from_v3_document(doc: Mapping[str, Any], key: str) -> NodeMetadata:
    node_type = doc.get("node_type")
    if node_type == "array":
        return ArrayMetadataV3.from_json(doc, key)
    if node_type == "group":
        return GroupMetadata.from_v3_json(doc, key)
    raise MetadataError(f"{key}: node_type must be 'array' or 'group', got {node_type!r}")


def _v2_consolidated(doc: Mapping[str, Any], key: str = V2_CONSOLIDATED_KEY) -> dict[str, dict[str, Any]]:
    """Regroup ``.zmetadata`` entries (``"a/b/.zarray": {...}``) by node path."""
    entries = doc.get("metadata")
    if not isinstance(entries, Mapping):
        raise MetadataError(f"{key}: missing 'metadata' object")
    by_node: dict[str, dict[str, Any]] = {}
    for entry, value in entries.items():
        if not isinstance(value, Mapping):
            raise MetadataError(f"{key}: metadata entry {entry!r} must be an object")
        node, _, name = entry.rpartition("/")
        by_node.setdefault(node, {})[name] = value
    return by_node


def metadata_from_consolidated(
    group: GroupMetadata, relative_path: str, source: tuple[str, str]
) -> NodeMetadata | None:
    """The metadata of a descendant recorded in ``group``'s consolidated metadata.

    ``source``: the key of the document holding the consolidated metadata and the
    descendant's path in it, for errors to name the entry where it is stored.
    """
    assert group.consolidated is not None
    document, entry = source
    if group.zarr_format == 3:
        doc = group.consolidated.get(relative_path)
        if doc is None:
            return None
        return _from_v3_document(doc, f"{document}: consolidated_metadata[{entry!r}]")
    docs = group.consolidated.get(relative_path)
    if not docs:
        return None
    attrs = docs.get(V2_ATTRS_KEY, {})
    if V2_ARRAY_KEY in docs:
        where = f"{entry}/{V2_ARRAY_KEY}"
        return ArrayMetadataV2.from_json(docs[V2_ARRAY_KEY], attrs, f"{document}: metadata[{where!r}]")
    if V2_GROUP_KEY in docs:
        return GroupMetadata(2, dict(attrs))
    return None


def save_metadata(store: Store, path: str, metadata: NodeMetadata) -> None:
    """Write a node's metadata documents (each put is atomic)."""
    prefix = prefix_of(path)
    docs = metadata.to_documents()
    store.set_many([(prefix + key, json_dumps(doc)) for key, doc in docs.items()])
    if metadata.zarr_format == 2 and V2_ATTRS_KEY not in docs:
        store.delete(prefix + V2_ATTRS_KEY)  # attributes were cleared


class Node:
    """What arrays and groups share: where they live, their names, read-only handling."""

    #: "array" or "group", for messages.
    kind: str = "node"
    _metadata: NodeMetadata

    def __init__(self, store: Store, path: str, *, read_only: bool, device: Device | str) -> None:
        self._store = store
        self._path = path
        self._read_only = read_only or store.read_only
        self._device = device if isinstance(device, Device) else resolve_device(device)

    @property
    def store(self) -> Store:
        """The store holding the node."""
        return self._store

    @property
    def path(self) -> str:
        """Path of the node inside its store (``""`` at the root)."""
        return self._path

    @property
    def name(self) -> str:
        """Absolute node name, as zarr-python reports it (``"/a/b"``)."""
        return "/" + self._path

    @property
    def basename(self) -> str:
        """Last component of the path."""
        return self._path.rsplit("/", 1)[-1]

    @property
    def zarr_format(self) -> int:
        """2 or 3."""
        return self._metadata.zarr_format

    @property
    def read_only(self) -> bool:
        """Whether writes are refused."""
        return self._read_only

    @property
    def device(self) -> Device:
        """Where reads put their results."""
        return self._device

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyError(f"{self.kind} {self.name!r} is read-only")
