"""The public entry points: open, create and consolidate arrays and groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NoReturn

from gpuzarr.array import Array
from gpuzarr.device import resolve_device
from gpuzarr.errors import (
    ArrayNotFoundError,
    ContainsArrayError,
    ContainsGroupError,
    GroupNotFoundError,
    NodeNotFoundError,
    ReadOnlyError,
)
from gpuzarr.group import (
    Group,
    _ensure_parents,
    create_node_array,
    create_node_group,
    node_from_metadata,
    same_format_members,
)
from gpuzarr.metadata import V2_CONSOLIDATED_KEY, ArrayMetadata, GroupMetadata, json_dumps
from gpuzarr.nodes import (
    join_path,
    load_metadata,
    normalize_path,
    prefix_of,
    save_metadata,
)
from gpuzarr.pipeline import delete_node
from gpuzarr.stores import Store, make_store

__all__ = ["consolidate_metadata", "create_array", "create_group", "open", "open_array", "open_group"]

AccessMode = Literal["r", "r+", "a", "w", "w-"]
_MODES = ("r", "r+", "a", "w", "w-")


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def _store_mode(mode: str, node_path: str) -> str:
    """The mode to make the store in, for ``mode`` applied to the node at ``node_path``.

    ``"w"`` lets a store start empty (a zip file is truncated), which is right only when
    the whole store is replaced. Below the root, siblings must survive: the store is
    opened for editing and the node cleared key by key.
    """
    return "a" if mode == "w" and node_path else mode


def _refuse_existing(existing: ArrayMetadata | GroupMetadata, node_path: str) -> None:
    """Raise the Contains* error for a node found where mode ``"w-"`` must create one."""
    if isinstance(existing, ArrayMetadata):
        raise ContainsArrayError(f"an array already exists at {'/' + node_path!r} (mode 'w-')")
    raise ContainsGroupError(f"a group already exists at {'/' + node_path!r} (mode 'w-')")


def _refuse_other_format(
    existing: ArrayMetadata | GroupMetadata,
    zarr_format: int,
    node_path: str,
    st: Store,
    mode: str,
    wanted: Literal["group", "node"],
) -> NoReturn:
    """Raise for a node of another format than the ``zarr_format`` asked for: not found
    in the modes that only open, else the Contains* error (creating a node of the other
    format beside it would leave two documents at one path)."""
    kind = "array" if isinstance(existing, ArrayMetadata) else "group"
    there = f"a zarr_format {existing.zarr_format} {kind}"
    if mode in ("r", "r+"):
        missing = GroupNotFoundError if wanted == "group" else NodeNotFoundError
        raise missing(
            f"no zarr_format {zarr_format} {wanted} found at {'/' + node_path!r} in {st!r} ({there} is there)"
        )
    contains = ContainsArrayError if kind == "array" else ContainsGroupError
    raise contains(
        f"{'/' + node_path!r} in {st!r} holds {there}, not zarr_format {zarr_format}: open it without "
        "zarr_format, or replace it with mode='w'"
    )


def open_array(
    store: Any,
    mode: AccessMode = "r",
    *,
    path: str | None = None,
    device: str = "cpu",
    zarr_format: Literal[2, 3] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Array:
    """Open an existing array (format 2 or 3, detected from its metadata).

    ``store`` is a directory path, a ``.zip`` path, a URL fsspec reaches (with
    ``storage_options`` for its filesystem), a dict, or a :class:`gpuzarr.stores.Store`.
    ``mode`` ``"r"`` opens read-only; ``"r+"`` and ``"a"`` allow writes.
    """
    _check_mode(mode)
    if mode in ("w", "w-"):
        raise ValueError(f"open_array cannot create arrays (mode {mode!r}); use create_array")
    dev = resolve_device(device)
    node_path = normalize_path(path)
    st = make_store(store, mode, storage_options)
    metadata = load_metadata(st, node_path)
    if metadata is None or (zarr_format is not None and metadata.zarr_format != zarr_format):
        raise ArrayNotFoundError(f"no array found at {'/' + node_path!r} in {st!r}")
    if not isinstance(metadata, ArrayMetadata):
        raise ArrayNotFoundError(f"{'/' + node_path!r} in {st!r} is a group, not an array")
    return Array(st, node_path, metadata, read_only=mode == "r", device=dev)


def create_array(
    store: Any,
    *,
    shape: Any = None,
    dtype: Any = None,
    chunks: Any = "auto",
    shards: Any = None,
    filters: Any = None,
    compressors: Any = "auto",
    serializer: Any = None,
    fill_value: Any = None,
    order: Literal["C", "F"] | None = None,
    zarr_format: Literal[2, 3] = 3,
    attributes: Mapping[str, Any] | None = None,
    dimension_names: Sequence[str | None] | None = None,
    chunk_key_encoding: Any = None,
    overwrite: bool = False,
    name: str | None = None,
    data: Any = None,
    device: str = "cpu",
    storage_options: Mapping[str, Any] | None = None,
) -> Array:
    """Create an array and return it, as zarr-python's ``create_array`` does.

    Codecs (``filters``, ``serializer``, ``compressors``) are codec objects, v3 JSON
    (``{"name": ..., "configuration": {...}}``), v2 numcodecs JSON (``{"id": ...}``) or
    numcodecs codec objects. ``compressors="auto"`` is zstd level 0; ``None`` stores
    chunks uncompressed. ``data`` (optional) is written after creation and supplies
    ``shape`` and ``dtype`` when they are not given.

    ``fill_value=None`` (the default) is the data type's default fill (0, ``""``, NaT...),
    written as that value in both formats; zarr-python writes ``null`` in a v2
    ``.zarray``. Both read either as the default.
    """
    if data is None and (shape is None or dtype is None):
        raise TypeError("create_array needs shape and dtype (or data)")
    node_path = normalize_path(name)
    st = make_store(store, _store_mode("w" if overwrite else "a", node_path), storage_options)
    return create_node_array(
        st,
        node_path,
        overwrite=overwrite,
        device=resolve_device(device),
        data=data,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        filters=filters,
        compressors=compressors,
        serializer=serializer,
        fill_value=fill_value,
        order=order,
        zarr_format=zarr_format,
        attributes=attributes,
        dimension_names=dimension_names,
        chunk_key_encoding=chunk_key_encoding,
    )


def open_group(
    store: Any = None,
    mode: AccessMode = "a",
    *,
    path: str | None = None,
    zarr_format: Literal[2, 3] | None = None,
    attributes: Mapping[str, Any] | None = None,
    use_consolidated: bool | None = None,
    device: str = "cpu",
    storage_options: Mapping[str, Any] | None = None,
) -> Group:
    """Open (or, in modes ``"a"``, ``"w"``, ``"w-"``, create) a group.

    Consolidated metadata is used when present unless ``use_consolidated=False``;
    ``use_consolidated=True`` requires it.
    """
    _check_mode(mode)
    dev = resolve_device(device)
    node_path = normalize_path(path)
    st = make_store(store, _store_mode(mode, node_path), storage_options)
    if mode == "w":
        if st.read_only:
            raise ReadOnlyError(f"cannot create a group in read-only {st!r}")
        # Refuse a group below an array before deleting anything.
        _ensure_parents(st, node_path, zarr_format or 3)
        delete_node(st, node_path)
        existing = None
    else:
        existing = load_metadata(st, node_path)
    if existing is not None:
        if mode == "w-":
            _refuse_existing(existing, node_path)
        if zarr_format is not None and existing.zarr_format != zarr_format:
            _refuse_other_format(existing, zarr_format, node_path, st, mode, "group")
        if not isinstance(existing, GroupMetadata):
            raise ContainsArrayError(f"{'/' + node_path!r} is an array, not a group")
        if use_consolidated is False and existing.consolidated is not None:
            existing = GroupMetadata(existing.zarr_format, existing.attributes, None)
        if use_consolidated is True and existing.consolidated is None:
            raise GroupNotFoundError(f"group {'/' + node_path!r} has no consolidated metadata")
        return Group(st, node_path, existing, read_only=mode == "r", device=dev)
    if mode in ("r", "r+"):
        raise GroupNotFoundError(f"no group found at {'/' + node_path!r} in {st!r}")
    return create_node_group(st, node_path, zarr_format=zarr_format or 3, attributes=dict(attributes or {}), device=dev)


def create_group(store: Any = None, *, path: str | None = None, **kwargs: Any) -> Group:
    """Create a new group (fails if a node exists there; see :func:`open_group`)."""
    return open_group(store, "w-", path=path, **kwargs)


def open(  # mirrors zarr.open (shadowing the builtin on purpose)
    store: Any = None,
    mode: AccessMode = "a",
    *,
    path: str | None = None,
    device: str = "cpu",
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Array | Group:
    """Open the array or group at ``path``, with file-like modes as zarr-python's ``open``.

    With ``shape`` in kwargs, an array is created where none exists in the modes that
    create (``"a"``, ``"w-"``; ``"w"`` replaces what exists), and an existing group is
    refused; without, a missing node becomes a group in those modes. ``"r"`` and
    ``"r+"`` open what exists and create nothing.
    """
    _check_mode(mode)
    dev = resolve_device(device)
    node_path = normalize_path(path)
    st = make_store(store, _store_mode(mode, node_path), storage_options)
    existing = None if mode == "w" else load_metadata(st, node_path)
    if mode == "w-" and existing is not None:
        _refuse_existing(existing, node_path)
    wanted_format = kwargs.get("zarr_format")
    if existing is not None and wanted_format is not None and existing.zarr_format != wanted_format:
        _refuse_other_format(existing, wanted_format, node_path, st, mode, "node")
    if "shape" in kwargs and existing is None and mode not in ("r", "r+"):
        return create_node_array(st, node_path, overwrite=mode == "w", device=dev, **kwargs)
    if "shape" in kwargs and isinstance(existing, GroupMetadata):
        raise ContainsGroupError(f"{'/' + node_path!r} is a group, not an array (shape was given)")
    if existing is not None:
        return node_from_metadata(st, node_path, existing, read_only=mode == "r", device=dev)
    if mode in ("r", "r+"):
        raise NodeNotFoundError(f"no array or group found at {'/' + node_path!r} in {st!r}")
    return open_group(st, mode, path=node_path, device=device, **kwargs)


def consolidate_metadata(
    store: Any,
    path: str | None = None,
    zarr_format: Literal[2, 3] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Group:
    """Gather the metadata of every node below a group into that group.

    v3: the group's ``zarr.json`` gets an inline ``consolidated_metadata`` object, as
    zarr-python writes it. v2: a ``.zmetadata`` document at the group. Returns the group,
    opened with the consolidated metadata in use.
    """
    node_path = normalize_path(path)
    st = make_store(store, "r+", storage_options)
    if st.read_only:
        raise ReadOnlyError(f"cannot consolidate metadata in read-only {st!r}")
    root = load_metadata(st, node_path)
    if not isinstance(root, GroupMetadata) or (zarr_format is not None and root.zarr_format != zarr_format):
        found = "" if zarr_format is None else f"zarr_format {zarr_format} "
        raise GroupNotFoundError(f"no {found}group found at {'/' + node_path!r} in {st!r}")
    fmt = root.zarr_format
    plain_root = Group(st, node_path, GroupMetadata(root.zarr_format, root.attributes, None))
    members = same_format_members(plain_root.members(max_depth=None), fmt)
    if fmt == 3:
        consolidated: dict[str, Any] = {}
        for name, node in members:
            consolidated[name] = (
                node.metadata.to_json()  # type: ignore[union-attr]
            )
        metadata = GroupMetadata(3, root.attributes, consolidated)
        save_metadata(st, node_path, metadata)
        return Group(st, node_path, metadata)
    entries: dict[str, Any] = {}
    prefix = prefix_of(node_path)
    for key, doc in GroupMetadata(2, root.attributes).to_documents().items():
        entries[key] = doc
    for name, node in members:
        for key, doc in node.metadata.to_documents().items():
            entries[f"{name}/{key}"] = doc
    st.set(prefix + V2_CONSOLIDATED_KEY, json_dumps({"zarr_consolidated_format": 1, "metadata": entries}))
    by_node: dict[str, dict[str, Any]] = {}
    for key, doc in entries.items():
        node, _, leaf = key.rpartition("/")
        by_node.setdefault(node, {})[leaf] = doc
    metadata = GroupMetadata(2, root.attributes, by_node)
    return Group(st, node_path, metadata)


_ = (Store, join_path)
