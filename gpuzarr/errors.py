"""Typed exceptions raised by gpuzarr.

Every error raised on bad input derives from :class:`GpuzarrError` and names the
store key, metadata field, codec or data type it is about, so a user can find the
offending object without a debugger. Where a built-in exception is the natural
contract (``KeyError`` for a missing node, ``IndexError`` for a bad selection,
``ValueError`` for malformed values) the typed error also derives from it, so code
written against zarr-python's habits keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArrayNotFoundError",
    "ChecksumError",
    "ContainsArrayError",
    "ContainsGroupError",
    "CorruptChunkError",
    "DeviceUnavailableError",
    "GpuzarrError",
    "GroupNotFoundError",
    "MetadataError",
    "NodeNotFoundError",
    "ReadOnlyError",
    "StoreError",
    "UnknownMetadataFieldError",
    "UnsupportedCodecError",
    "UnsupportedDataTypeError",
]


class GpuzarrError(Exception):
    """Base class of every error gpuzarr raises on purpose."""


class MetadataError(GpuzarrError, ValueError):
    """Array or group metadata is malformed, inconsistent or has a bad value.

    The message names the metadata key (e.g. ``a/b/zarr.json``) and the field.
    """


class UnknownMetadataFieldError(MetadataError):
    """A v3 metadata document holds an unknown field that must be understood."""


class UnsupportedCodecError(GpuzarrError, ValueError):
    """A codec named in metadata or given by the user is unknown or unsupported."""


class UnsupportedDataTypeError(GpuzarrError, ValueError):
    """A data type named in metadata or given by the user is unknown or unsupported."""


class ChecksumError(GpuzarrError, ValueError):
    """Stored bytes failed their checksum (crc32c, zstd content checksum, ...)."""


class CorruptChunkError(GpuzarrError, ValueError):
    """A stored chunk (or shard) cannot be decoded: garbled, truncated or wrong size."""


class NodeNotFoundError(GpuzarrError, KeyError):
    """No array or group exists at the given path."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ArrayNotFoundError(NodeNotFoundError):
    """No array exists at the given path."""


class GroupNotFoundError(NodeNotFoundError):
    """No group exists at the given path."""


class ContainsArrayError(GpuzarrError, FileExistsError):
    """An array already exists where a new node was to be created."""


class ContainsGroupError(GpuzarrError, FileExistsError):
    """A group already exists where a new node was to be created."""


class StoreError(GpuzarrError, OSError):
    """A store operation failed (bad key, I/O failure, closed store)."""


class ReadOnlyError(StoreError, PermissionError):
    """A write was attempted on a store or array opened read-only."""


class DeviceUnavailableError(GpuzarrError, RuntimeError):
    """The requested device (e.g. ``"cuda"``) cannot be used here."""
