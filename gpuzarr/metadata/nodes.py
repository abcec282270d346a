"""Array and group metadata documents of Zarr format v2 and v3.

The classes here validate a metadata document completely when it is parsed (every
error names the document key and the field), expose what the rest of gpuzarr needs in
one shape for both formats (``shape``, ``chunks``, ``data_type``, ``fill_value``,
``chunk_key``...), and write documents back in the form zarr-python writes them.

Codecs stay JSON here: turning them into codec objects is the codecs layer's job, which
keeps this layer free of codec imports (layers import one way, top to bottom).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from gpuzarr._checks import is_int
from gpuzarr.errors import MetadataError, UnknownMetadataFieldError, UnsupportedCodecError
from gpuzarr.metadata.dtypes import (
    DataType,
    data_type_from_v2,
    data_type_from_v3,
    default_fill_value,
)

__all__ = [
    "ArrayMetadata",
    "ArrayMetadataV2",
    "ArrayMetadataV3",
    "ChunkKeyEncoding",
    "GroupMetadata",
    "V2_ARRAY_KEY",
    "V2_ATTRS_KEY",
    "V2_CONSOLIDATED_KEY",
    "V2_GROUP_KEY",
    "V3_KEY",
    "json_dumps",
    "normalize_codec_json",
    "parse_array_metadata",
]

V3_KEY = "zarr.json"
V2_ARRAY_KEY = ".zarray"
V2_GROUP_KEY = ".zgroup"
V2_ATTRS_KEY = ".zattrs"
V2_CONSOLIDATED_KEY = ".zmetadata"

ZarrFormat = Literal[2, 3]


def json_dumps(doc: Mapping[str, Any]) -> bytes:
    """Serialise a metadata document as zarr-python does (2-space indent).

    Non-finite floats only occur inside user attributes. zarr-python writes them as bare
    ``NaN``/``Infinity``, which is not JSON (tensorstore refuses such a document); they
    are written here as the strings the spec uses for fill values, so they read back as
    those strings. (Bare ones are read as floats.)
    """
    return json.dumps(_jsonable(doc), indent=2, allow_nan=False).encode("utf-8")


def _jsonable(value: Any, path: str = "") -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic) or (hasattr(value, "item") and getattr(value, "ndim", None) == 0):
        return _jsonable(value.item(), path)  # NumPy (torch, CuPy, ...) scalars in attributes
    # (Checked here, not by json.dumps: its error names neither the field nor the key.)
    raise TypeError(f"metadata field {path!r}: {type(value).__name__} {value!r:.60} is not a JSON value")


def parse_json(raw: bytes, key: str) -> dict[str, Any]:
    """Decode a JSON metadata document, raising MetadataError naming ``key``."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{key}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{key}: expected a JSON object, got {type(doc).__name__}")
    return doc


# --------------------------------------------------------------------------------------
# chunk key encodings


@dataclass(frozen=True, slots=True)
class ChunkKeyEncoding:
    """How chunk grid coordinates become store keys.

    ``default`` (v3): ``c/1/2`` (or ``c.1.2``), ``c`` for 0-d arrays.
    ``v2``: ``1.2`` (or ``1/2``), ``0`` for 0-d arrays.
    """

    name: Literal["default", "v2"] = "default"
    separator: Literal["/", "."] = "/"

    def encode(self, coords: Sequence[int]) -> str:
        """The key, relative to the array's path, of the chunk at ``coords``."""
        if self.name == "default":
            return self.separator.join(["c", *map(str, coords)])
        return self.separator.join(map(str, coords)) if coords else "0"

    def to_json(self) -> dict[str, Any]:
        """The v3 ``chunk_key_encoding`` field."""
        return {"name": self.name, "configuration": {"separator": self.separator}}

    @classmethod
    def from_json(cls, value: Any, where: str) -> ChunkKeyEncoding:
        """Parse the v3 ``chunk_key_encoding`` field (or a user shorthand)."""
        if isinstance(value, ChunkKeyEncoding):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping) or value.get("name") not in ("default", "v2"):
            raise MetadataError(f"{where}: unsupported chunk_key_encoding {value!r}")
        name = value["name"]
        config = value.get("configuration", {})
        if not isinstance(config, Mapping):
            raise MetadataError(f"{where}: chunk_key_encoding configuration must be an object, got {config!r}")
        if set(config) - {"separator"}:
            raise MetadataError(
                f"{where}: unknown chunk_key_encoding configuration fields {sorted(set(config) - {'separator'})}"
            )
        sep = config.get("separator", value.get("separator", "/" if name == "default" else "."))
        if sep not in ("/", "."):
            raise MetadataError(f"{where}: separator must be '/' or '.', got {sep!r}")
        return cls(name, sep)


# --------------------------------------------------------------------------------------
# shared helpers


def _shape(value: Any, where: str, *, allow_zero: bool) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        is_int(v) for v in value
    ):
        raise MetadataError(f"{where}: expected a list of integers, got {value!r}")
    low = 0 if allow_zero else 1
    if any(v < low for v in value):
        raise MetadataError(f"{where}: values must be >= {low}, got {value!r}")
    if any(v > _MAX_EXTENT for v in value):
        # (NumPy indexes with int64: a larger extent could be neither indexed nor sized.)
        raise MetadataError(f"{where}: values must be at most 2**63 - 1, got {value!r}")
    return tuple(value)


_MAX_EXTENT = 2**63 - 1


def normalize_codec_json(value: Any, where: str) -> dict[str, Any]:
    """A v3 codec entry as ``{"name": ..., "configuration": {...}}``."""
    if isinstance(value, str):
        return {"name": value, "configuration": {}}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        config = value.get("configuration", {})
        if not isinstance(config, Mapping):
            raise MetadataError(f"{where}: codec {value['name']!r} configuration must be an object")
        return {"name": value["name"], "configuration": dict(config)}
    raise MetadataError(f"{where}: invalid codec entry {value!r}")


class ArrayMetadata:
    """What both formats' array metadata offer the rest of gpuzarr."""

    zarr_format: ZarrFormat
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    data_type: DataType
    attributes: dict[str, Any]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def chunk_grid_shape(self) -> tuple[int, ...]:
        """Number of chunks along each dimension."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def fill_value(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def chunk_key(self, coords: Sequence[int]) -> str:  # pragma: no cover - overridden
        """The key, relative to the array's path, of the chunk at ``coords``."""
        raise NotImplementedError

    def to_documents(self) -> dict[str, dict[str, Any]]:  # pragma: no cover - overridden
        """The metadata documents to store, by key relative to the array's path."""
        raise NotImplementedError

    def with_attributes(self, attributes: Mapping[str, Any]) -> ArrayMetadata:
        """A copy with other attributes."""
        return replace(self, attributes=dict(attributes))  # type: ignore[type-var]

    def with_shape(self, shape: Sequence[int]) -> ArrayMetadata:
        """A copy with another shape (for resize)."""
        return replace(self, shape=tuple(shape))  # type: ignore[type-var]


_V3_ARRAY_FIELDS = {
    "zarr_format",
    "node_type",
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
    "attributes",
    "dimension_names",
    "storage_transformers",
}


def _check_unknown_fields(doc: Mapping[str, Any], known: set[str], key: str) -> None:
    """Apply v3's must_understand rule: unknown fields are errors unless they opt out."""
    for name, value in doc.items():
        if name in known:
            continue
        if isinstance(value, Mapping) and value.get("must_understand") is False:
            continue
        raise UnknownMetadataFieldError(
            f"{key}: unknown metadata field {name!r} that must be understood"
        )


@dataclass(frozen=True)
class ArrayMetadataV3(ArrayMetadata):
    """A v3 array's ``zarr.json``."""

    shape: tuple[int, ...]
    data_type: DataType
    chunks: tuple[int, ...]
    fill_value_: Any
    codecs: tuple[dict[str, Any], ...]
    chunk_key_encoding: ChunkKeyEncoding = ChunkKeyEncoding()
    attributes: dict[str, Any] = field(default_factory=dict)
    dimension_names: tuple[str | None, ...] | None = None
    zarr_format: ZarrFormat = 3

    @property
    def fill_value(self) -> Any:
        return self.fill_value_

    def chunk_key(self, coords: Sequence[int]) -> str:
        return self.chunk_key_encoding.encode(coords)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], key: str = V3_KEY) -> ArrayMetadataV3:
        """Parse and validate an array ``zarr.json`` document."""
        if doc.get("zarr_format") != 3:
            raise MetadataError(f"{key}: zarr_format must be 3, got {doc.get('zarr_format')!r}")
        if doc.get("node_type") != "array":
            raise MetadataError(f"{key}: node_type must be 'array', got {doc.get('node_type')!r}")
        for required in ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs"):
            if required not in doc:
                raise MetadataError(f"{key}: missing required field {required!r}")
        _check_unknown_fields(doc, _V3_ARRAY_FIELDS, key)
        shape = _shape(doc["shape"], f"{key}: shape", allow_zero=True)
        data_type = data_type_from_v3(doc["data_type"], f"{key}: data_type")
        grid = doc["chunk_grid"]
        if not isinstance(grid, Mapping):
            # (A bare "regular" carries no chunk_shape.)
            raise MetadataError(f"{key}: chunk_grid: expected {{'name': 'regular', 'configuration': "
                                f"{{'chunk_shape': [...]}}}}, got {grid!r}")
        if grid.get("name") != "regular":
            raise MetadataError(f"{key}: chunk_grid: only the 'regular' grid is supported, got {grid.get('name')!r}")
        grid_config = grid.get("configuration")
        if not isinstance(grid_config, Mapping):
            raise MetadataError(f"{key}: chunk_grid.configuration must be an object, got {grid_config!r}")
        if set(grid_config) - {"chunk_shape"}:
            raise MetadataError(
                f"{key}: chunk_grid.configuration: unknown fields {sorted(set(grid_config) - {'chunk_shape'})}"
            )
        chunks = _shape(
            grid_config.get("chunk_shape"),
            f"{key}: chunk_grid.chunk_shape",
            allow_zero=False,
        )
        if len(chunks) != len(shape):
            raise MetadataError(f"{key}: chunk_shape {chunks} does not match shape {shape}")
        encoding = ChunkKeyEncoding.from_json(doc["chunk_key_encoding"], f"{key}: chunk_key_encoding")
        fill = data_type.parse_fill_value_v3(doc["fill_value"], f"{key}: fill_value")
        codecs = doc["codecs"]
        if not isinstance(codecs, list) or not codecs:
            raise MetadataError(f"{key}: codecs must be a non-empty list")
        codec_json = tuple(normalize_codec_json(c, f"{key}: codecs") for c in codecs)
        attributes = doc.get("attributes", {})
        if not isinstance(attributes, dict):
            raise MetadataError(f"{key}: attributes must be an object")
        names = doc.get("dimension_names")
        if names is not None:
            if not isinstance(names, list) or len(names) != len(shape) or not all(
                n is None or isinstance(n, str) for n in names
            ):
                raise MetadataError(f"{key}: dimension_names must list a string or null per dimension")
            names = tuple(names)
        transformers = doc.get("storage_transformers", [])
        if not isinstance(transformers, list):
            raise MetadataError(f"{key}: storage_transformers must be a list, got {transformers!r}")
        if transformers:
            raise UnsupportedCodecError(f"{key}: storage_transformers {transformers!r} are not supported")
        return cls(shape, data_type, chunks, fill, codec_json, encoding, attributes, names)

    def to_json(self) -> dict[str, Any]:
        """The ``zarr.json`` document."""
        doc: dict[str, Any] = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(self.shape),
            "data_type": self.data_type.to_v3_json(),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(self.chunks)}},
            "chunk_key_encoding": self.chunk_key_encoding.to_json(),
            "fill_value": self.data_type.encode_fill_value_v3(self.fill_value),
            "codecs": [dict(c) for c in self.codecs],
            "attributes": self.attributes,
            "storage_transformers": [],
        }
        if self.dimension_names is not None:
            doc["dimension_names"] = list(self.dimension_names)
        return doc

    def to_documents(self) -> dict[str, dict[str, Any]]:
        return {V3_KEY: self.to_json()}


_V2_ARRAY_FIELDS = {
    "zarr_format",
    "shape",
    "chunks",
    "dtype",
    "compressor",
    "fill_value",
    "order",
    "filters",
    "dimension_separator",
}


@dataclass(frozen=True)
class ArrayMetadataV2(ArrayMetadata):
    """A v2 array's ``.zarray`` (plus ``.zattrs``)."""

    shape: tuple[int, ...]
    data_type: DataType
    chunks: tuple[int, ...]
    stored_dtype: str
    fill_value_v2: Any  # None means "null" in the document
    order: Literal["C", "F"] = "C"
    filters: tuple[dict[str, Any], ...] = ()
    compressor: dict[str, Any] | None = None
    dimension_separator: Literal[".", "/"] = "."
    attributes: dict[str, Any] = field(default_factory=dict)
    zarr_format: ZarrFormat = 2

    @property
    def fill_value(self) -> Any:
        # A null fill value leaves unwritten chunks undefined; zarr-python reads its
        # default (zero, or NaT for times).
        return default_fill_value(self.data_type) if self.fill_value_v2 is None else self.fill_value_v2

    @property
    def dimension_names(self) -> None:
        """v2 has no dimension names."""
        return None

    def chunk_key(self, coords: Sequence[int]) -> str:
        return self.dimension_separator.join(map(str, coords)) if coords else "0"

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], attributes: Mapping[str, Any] | None = None, key: str = V2_ARRAY_KEY
    ) -> ArrayMetadataV2:
        """Parse and validate a ``.zarray`` document (and its ``.zattrs``)."""
        if doc.get("zarr_format") != 2:
            raise MetadataError(f"{key}: zarr_format must be 2, got {doc.get('zarr_format')!r}")
        for required in ("shape", "chunks", "dtype", "compressor", "fill_value", "order", "filters"):
            if required not in doc:
                raise MetadataError(f"{key}: missing required field {required!r}")
        shape = _shape(doc["shape"], f"{key}: shape", allow_zero=True)
        chunks = _shape(doc["chunks"], f"{key}: chunks", allow_zero=False)
        if len(chunks) != len(shape):
            raise MetadataError(f"{key}: chunks {chunks} does not match shape {shape}")
        filters = [] if doc["filters"] is None else doc["filters"]
        if not isinstance(filters, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("id"), str) for f in filters
        ):
            raise MetadataError(f"{key}: filters must be null or a list of {{'id': ...}} objects")
        compressor = doc["compressor"]
        if compressor is not None and not (
            isinstance(compressor, Mapping) and isinstance(compressor.get("id"), str)
        ):
            raise MetadataError(f"{key}: compressor must be null or an {{'id': ...}} object")
        object_codec = next(
            (f["id"] for f in filters if f["id"] in ("vlen-utf8", "vlen-bytes", "json2", "msgpack2", "pickle")),
            None,
        )
        dtype_str = doc["dtype"]
        data_type = data_type_from_v2(dtype_str, f"{key}: dtype", object_codec=object_codec)
        order = doc["order"]
        if order not in ("C", "F"):
            raise MetadataError(f"{key}: order must be 'C' or 'F', got {order!r}")
        sep = doc.get("dimension_separator", ".")
        if sep not in (".", "/"):
            raise MetadataError(f"{key}: dimension_separator must be '.' or '/', got {sep!r}")
        fill = data_type.parse_fill_value_v2(doc["fill_value"], f"{key}: fill_value")
        return cls(
            shape,
            data_type,
            chunks,
            dtype_str,
            fill,
            order,
            tuple(dict(f) for f in filters),
            dict(compressor) if compressor is not None else None,
            sep,
            dict(attributes or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``.zarray`` document."""
        return {
            "zarr_format": 2,
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "dtype": self.stored_dtype,
            "compressor": self.compressor,
            "fill_value": self.data_type.encode_fill_value_v2(self.fill_value_v2),
            "order": self.order,
            "filters": [dict(f) for f in self.filters] or None,
            "dimension_separator": self.dimension_separator,
        }

    def to_documents(self) -> dict[str, dict[str, Any]]:
        docs = {V2_ARRAY_KEY: self.to_json()}
        if self.attributes:
            docs[V2_ATTRS_KEY] = self.attributes
        return docs


def parse_array_metadata(documents: Mapping[str, Any], path: str) -> ArrayMetadata:
    """Build array metadata from already-decoded documents (``zarr.json`` or ``.zarray``)."""
    prefix = f"{path}/" if path else ""
    if V3_KEY in documents:
        return ArrayMetadataV3.from_json(documents[V3_KEY], prefix + V3_KEY)
    return ArrayMetadataV2.from_json(
        documents[V2_ARRAY_KEY], documents.get(V2_ATTRS_KEY), prefix + V2_ARRAY_KEY
    )


# --------------------------------------------------------------------------------------
# groups


@dataclass(frozen=True)
class GroupMetadata:
    """A group's ``zarr.json`` (v3) or ``.zgroup`` + ``.zattrs`` (v2).

    ``consolidated`` maps member paths (relative to this group) to their metadata
    documents: for v3 the inline ``consolidated_metadata.metadata`` object, for v2 the
    ``.zmetadata`` entries regrouped by node.
    """

    zarr_format: ZarrFormat = 3
    attributes: dict[str, Any] = field(default_factory=dict)
    consolidated: dict[str, dict[str, Any]] | None = None

    @classmethod
    def from_v3_json(cls, doc: Mapping[str, Any], key: str = V3_KEY) -> GroupMetadata:
        """Parse a group ``zarr.json``."""
        if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
            raise MetadataError(f"{key}: not a v3 group document")
        _check_unknown_fields(doc, {"zarr_format", "node_type", "attributes", "consolidated_metadata"}, key)
        attributes = doc.get("attributes", {})
        if not isinstance(attributes, dict):
            raise MetadataError(f"{key}: attributes must be an object")
        consolidated = None
        cm = doc.get("consolidated_metadata")
        if cm is not None:
            if not isinstance(cm, Mapping) or cm.get("kind") != "inline" or not isinstance(
                cm.get("metadata"), Mapping
            ):
                raise MetadataError(f"{key}: consolidated_metadata must be inline with a metadata object")
            entries = cm["metadata"]
            if not all(isinstance(v, Mapping) for v in entries.values()):
                raise MetadataError(f"{key}: consolidated_metadata entries must be objects")
            consolidated = {k: dict(v) for k, v in entries.items()}
        return cls(3, attributes, consolidated)

    def to_json(self) -> dict[str, Any]:
        """The v3 ``zarr.json`` document."""
        doc: dict[str, Any] = {"zarr_format": 3, "node_type": "group", "attributes": self.attributes}
        if self.consolidated is not None:
            doc["consolidated_metadata"] = {
                "kind": "inline",
                "must_understand": False,
                "metadata": self.consolidated,
            }
        return doc

    def to_documents(self) -> dict[str, dict[str, Any]]:
        """The metadata documents to store, by key relative to the group's path."""
        if self.zarr_format == 3:
            return {V3_KEY: self.to_json()}
        docs: dict[str, dict[str, Any]] = {V2_GROUP_KEY: {"zarr_format": 2}}
        if self.attributes:
            docs[V2_ATTRS_KEY] = self.attributes
        return docs
