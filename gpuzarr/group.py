"""The user-facing :class:`Group`, mirroring zarr-python 3's ``zarr.Group``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from gpuzarr.array import Array, Attributes, like_arguments, summary_text
from gpuzarr.creation import _shape_tuple, build_array_metadata
from gpuzarr.device import Device
from gpuzarr.errors import (
    ContainsArrayError,
    ContainsGroupError,
    NodeNotFoundError,
    ReadOnlyError,
)
from gpuzarr.indexing import array_module
from gpuzarr.metadata import V2_CONSOLIDATED_KEY, V3_KEY, ArrayMetadata, GroupMetadata
from gpuzarr.metadata.dtypes import data_type_from_user
from gpuzarr.nodes import (
    Node,
    NodeMetadata,
    join_path,
    load_metadata,
    metadata_from_consolidated,
    prefix_of,
    save_metadata,
)
from gpuzarr.pipeline import delete_node
from gpuzarr.stores import Store

__all__ = ["Group", "create_node_array", "create_node_group", "node_from_metadata", "same_format_members"]


def node_from_metadata(
    store: Store, path: str, metadata: NodeMetadata, *, read_only: bool, device: Device
) -> Array | Group:
    """The Array or Group object for parsed metadata."""
    if isinstance(metadata, GroupMetadata):
        return Group(store, path, metadata, read_only=read_only, device=device)
    return Array(store, path, metadata, read_only=read_only, device=device)


def _missing_parents(store: Store, path: str) -> list[str]:
    """Ancestors of ``path`` that have no metadata yet, root first.

    Raises ContainsArrayError when an ancestor is an array: nothing may live below one.
    Checking before writing anything keeps a refused creation from changing the store.
    """
    if not path:
        return []  # the root has no parent
    parts = path.split("/")[:-1]
    missing = []
    for i in range(len(parts) + 1):
        parent = "/".join(parts[:i])
        existing = load_metadata(store, parent)
        if existing is None:
            missing.append(parent)
        elif isinstance(existing, ArrayMetadata):
            raise ContainsArrayError(f"cannot create a node below array {'/' + parent!r}")
    return missing


def _ensure_parents(store: Store, path: str, zarr_format: int) -> None:
    """Create group metadata for ancestors that have none (zarr-python does the same)."""
    for parent in _missing_parents(store, path):
        save_metadata(store, parent, GroupMetadata(zarr_format))  # type: ignore[arg-type]


def _clear_or_refuse(store: Store, path: str, overwrite: bool) -> None:
    existing = load_metadata(store, path)
    if existing is None:
        return
    if not overwrite:
        cls = ContainsArrayError if isinstance(existing, ArrayMetadata) else ContainsGroupError
        kind = "an array" if isinstance(existing, ArrayMetadata) else "a group"
        raise cls(f"{kind} already exists at {'/' + path!r} (pass overwrite=True to replace it)")
    delete_node(store, path)


#: zarr-python's data type for arrays of one value (zeros, full...) made without one.
ONE_VALUE_DTYPE = "float64"

#: The array settings create_array takes (build_array_metadata's keyword arguments).
_ARRAY_ARGUMENTS = frozenset(inspect.signature(build_array_metadata).parameters)


def create_node_array(
    store: Store, path: str, *, overwrite: bool = False, device: Any = "cpu", data: Any = None, **kwargs: Any
) -> Array:
    """Create an array at ``path`` (shared by create_array and Group.create_array).

    With ``data``, the array is written after creation, and ``shape`` and ``dtype``
    default to the data's where not given (or given as None).
    """
    if store.read_only:
        raise ReadOnlyError(f"cannot create array {'/' + path!r}: the store is read-only")
    unknown = sorted(set(kwargs) - _ARRAY_ARGUMENTS)
    if unknown:  # (named here: build_array_metadata's own TypeError names an internal function)
        raise TypeError(f"create_array() got unexpected keyword arguments {unknown}")
    # create_array passes shape=None/dtype=None explicitly when they are not given.
    on_device = data is not None and not isinstance(data, Array) and array_module(data) is not np  # (CuPy)
    if data is not None and (kwargs.get("shape") is None or kwargs.get("dtype") is None):
        # (NumPy, CuPy and gpuzarr arrays carry a NumPy dtype; others, torch tensors
        # say, become NumPy arrays first.)
        inferred = data if isinstance(data, np.ndarray | Array) or on_device else np.asarray(data)
        if kwargs.get("shape") is None:
            kwargs["shape"] = tuple(inferred.shape)
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = inferred.dtype
    metadata = build_array_metadata(**kwargs)
    array = Array(store, path, metadata, device=device)  # (nothing is stored yet)
    if data is not None:
        # Data that cannot fill the array is refused before anything is stored: a failed
        # create_array must not leave an array behind (which the next call would refuse).
        if not isinstance(data, Array) and not on_device:
            data = array._coerce(data)  # (NumPy's assignment rules: may raise)
        data_shape = tuple(np.shape(data)) if not isinstance(data, Array) else data.shape
        try:
            fits = np.broadcast_shapes(data_shape, metadata.shape) == metadata.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"create_array: data of shape {data_shape} does not fit shape {metadata.shape}")
    parents = _missing_parents(store, path)
    _clear_or_refuse(store, path, overwrite)
    for parent in parents:
        save_metadata(store, parent, GroupMetadata(metadata.zarr_format))
    save_metadata(store, path, metadata)
    if data is not None:
        array[...] = data
    return array


def create_node_group(
    store: Store,
    path: str,
    *,
    zarr_format: int = 3,
    attributes: dict[str, Any] | None = None,
    overwrite: bool = False,
    device: Any = "cpu",
) -> Group:
    """Create a group at ``path`` (shared by open_group and Group.create_group)."""
    if store.read_only:
        raise ReadOnlyError(f"cannot create group {'/' + path!r}: the store is read-only")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    parents = _missing_parents(store, path)
    _clear_or_refuse(store, path, overwrite)
    for parent in parents:
        save_metadata(store, parent, GroupMetadata(zarr_format))  # type: ignore[arg-type]
    metadata = GroupMetadata(zarr_format, dict(attributes or {}))  # type: ignore[arg-type]
    save_metadata(store, path, metadata)
    return Group(store, path, metadata, device=device)


class Group(Node):
    """A Zarr group: a named container of arrays and groups with attributes."""

    kind = "group"

    def __init__(
        self,
        store: Store,
        path: str,
        metadata: GroupMetadata,
        *,
        read_only: bool = False,
        device: Device | str = "cpu",
        consolidated_view: dict[str, dict[str, Any]] | None = None,
        consolidated_source: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(store, path, read_only=read_only, device=device)
        self._metadata = metadata
        # Consolidated metadata of the members, relative to this group: the group's own,
        # or (for a group reached through a consolidated ancestor) the ancestor's entries
        # below it, so navigating a consolidated hierarchy never reads member metadata.
        # Kept apart from `metadata` so that writing attributes never stores it.
        self._view = consolidated_view if consolidated_view is not None else metadata.consolidated
        # Where that snapshot is stored, and this group's path within it (how errors in
        # a member's entry name the document that holds it).
        own_key = prefix_of(path) + (V3_KEY if metadata.zarr_format == 3 else V2_CONSOLIDATED_KEY)
        self._view_source = consolidated_source if consolidated_source is not None else (own_key, "")
        self._consolidated_stale = False  # set once this object adds a member

    # -- description ------------------------------------------------------------------





    @property
    def metadata(self) -> GroupMetadata:
        """The parsed group metadata."""
        return self._metadata



    @property
    def attrs(self) -> Attributes:
        """User attributes (changes are written to the store at once)."""
        return Attributes(lambda: self._metadata.attributes, self._write_attributes)

    def _write_attributes(self, attributes: dict[str, Any]) -> None:
        self._check_writable()
        metadata = GroupMetadata(self._metadata.zarr_format, attributes, self._metadata.consolidated)
        save_metadata(self._store, self._path, metadata)
        self._metadata = metadata


    def __repr__(self) -> str:
        return f"<gpuzarr.Group {self.name!r}>"

    # -- members ----------------------------------------------------------------------

    def _use_consolidated(self) -> bool:
        # A writable group reads its members' own metadata: changes made through a
        # member (attributes, resize) are not in the snapshot, and a member opened from
        # the snapshot would write them back over the store's newer document.
        return self._view is not None and not self._consolidated_stale and self._read_only

    def _child_metadata(self, relative: str) -> NodeMetadata | None:
        if self._use_consolidated():
            view = GroupMetadata(self._metadata.zarr_format, {}, self._view)
            document, below = self._view_source
            found = metadata_from_consolidated(view, relative, (document, below + relative))
            if found is not None:
                return found
        return load_metadata(self._store, join_path(self._path, relative))

    def _child_node(self, relative: str, metadata: NodeMetadata) -> Array | Group:
        path = join_path(self._path, relative)
        if isinstance(metadata, GroupMetadata) and self._use_consolidated():
            assert self._view is not None
            below = relative + "/"
            view = {k[len(below) :]: v for k, v in self._view.items() if k.startswith(below)}
            document, above = self._view_source
            return Group(
                self._store,
                path,
                metadata,
                read_only=self._read_only,
                device=self._device,
                consolidated_view=view,
                consolidated_source=(document, above + below),
            )
        return node_from_metadata(self._store, path, metadata, read_only=self._read_only, device=self._device)

    def __getitem__(self, name: str) -> Array | Group:
        relative = join_path("", name)
        metadata = self._child_metadata(relative) if relative else None
        if metadata is None:
            raise NodeNotFoundError(f"no array or group named {name!r} in group {self.name!r}")
        return self._child_node(relative, metadata)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except NodeNotFoundError:
            return False
        return True

    def _child_names(self) -> list[str]:
        if self._use_consolidated():
            assert self._view is not None
            return sorted({k.split("/", 1)[0] for k in self._view if k})
        return sorted(self._store.list_dir(prefix_of(self._path)))

    def members(self, max_depth: int | None = 0) -> tuple[tuple[str, Array | Group], ...]:
        """``(name, node)`` pairs of the children, sorted by name.

        ``max_depth`` 0 lists direct children; ``None`` lists all descendants with their
        relative paths as names.
        """
        found: list[tuple[str, Array | Group]] = []
        for child in self._child_names():
            metadata = self._child_metadata(child)
            if metadata is None:
                continue  # a chunk directory or a file that is not a node
            node = self._child_node(child, metadata)
            found.append((child, node))
            if isinstance(node, Group) and (max_depth is None or max_depth > 0):
                deeper = None if max_depth is None else max_depth - 1
                found.extend((f"{child}/{n}", m) for n, m in node.members(deeper))
        return tuple(found)

    def tree(self) -> str:
        """The hierarchy below this group as indented text: groups by name, arrays with
        their shape and data type (zarr-python's ``tree()`` draws it with ``rich``)."""
        lines = [self.name]
        for name, member in self.members(max_depth=None):
            indent = "  " * (name.count("/") + 1)
            leaf = name.rsplit("/", 1)[-1]
            if isinstance(member, Array):
                lines.append(f"{indent}{leaf} {member.shape} {member.metadata.data_type.name}")
            else:
                lines.append(f"{indent}{leaf}")
        return "\n".join(lines)

    def keys(self) -> Iterator[str]:
        """Names of the direct children."""
        return (name for name, _ in self.members())

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __len__(self) -> int:
        return len(self.members())

    def arrays(self) -> Iterator[tuple[str, Array]]:
        """``(name, array)`` pairs of the child arrays."""
        return ((n, m) for n, m in self.members() if isinstance(m, Array))

    def groups(self) -> Iterator[tuple[str, Group]]:
        """``(name, group)`` pairs of the child groups."""
        return ((n, m) for n, m in self.members() if isinstance(m, Group))

    def array_keys(self) -> Iterator[str]:
        """Names of the child arrays."""
        return (n for n, _ in self.arrays())

    def group_keys(self) -> Iterator[str]:
        """Names of the child groups."""
        return (n for n, _ in self.groups())

    # -- creating members ------------------------------------------------------------

    def create_group(
        self, name: str, *, attributes: dict[str, Any] | None = None, overwrite: bool = False
    ) -> Group:
        """Create a child group (same Zarr format as this group)."""
        self._check_writable()
        group = create_node_group(
            self._store,
            join_path(self._path, name),
            zarr_format=self.zarr_format,
            attributes=attributes,
            overwrite=overwrite,
            device=self._device,
        )
        self._forget_consolidated()
        return group

    def _existing_child(self, name: str, kind: type[Array] | type[Group]) -> Any:
        """The child ``name``, or None if there is none; one of the other kind is refused
        (ContainsArrayError, ContainsGroupError)."""
        try:
            node = self[name]
        except NodeNotFoundError:
            return None
        if not isinstance(node, kind):
            if isinstance(node, Array):
                raise ContainsArrayError(f"{node.name!r} is an array, not a group")
            raise ContainsGroupError(f"{node.name!r} is a group, not an array")
        return node

    def require_group(self, name: str, **kwargs: Any) -> Group:
        """The child group ``name``, created if missing."""
        node = self._existing_child(name, Group)
        return self.create_group(name, **kwargs) if node is None else node

    def require_array(self, name: str, **kwargs: Any) -> Array:
        """The child array ``name``, created (with :meth:`create_array`'s arguments) if
        missing. An existing array must have the ``shape`` and ``dtype`` given, if any
        (TypeError otherwise, as in zarr-python); a group there is refused."""
        node = self._existing_child(name, Array)
        if node is None:
            return self.create_array(name, **kwargs)
        shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
        wanted = None if shape is None else _shape_tuple(shape, "shape")
        if wanted is not None and wanted != node.shape:
            raise TypeError(f"require_array: {node.name!r} has shape {node.shape}, not {wanted}")
        if dtype is not None and data_type_from_user(dtype).dtype != node.dtype:
            raise TypeError(f"require_array: {node.name!r} has dtype {node.dtype}, not {dtype}")
        return node

    def create_array(self, name: str, **kwargs: Any) -> Array:
        """Create a child array; takes :func:`gpuzarr.create_array`'s keyword arguments."""
        self._check_writable()
        kwargs.setdefault("zarr_format", self.zarr_format)
        kwargs.setdefault("device", self._device)
        array = create_node_array(self._store, join_path(self._path, name), **kwargs)
        self._forget_consolidated()
        return array

    def __delitem__(self, name: str) -> None:
        """Delete the member ``name`` (a path below this group), everything below it
        included, as zarr-python's ``del group[name]``. Consolidated metadata stored
        above it still lists it until consolidated again."""
        self._check_writable()
        node = self[name]  # (NodeNotFoundError for a missing member)
        delete_node(self._store, node._path)
        self._forget_consolidated()

    # -- zarr-python's conveniences ----------------------------------------------------

    def full(self, *, name: str, shape: Any, fill_value: Any, **kwargs: Any) -> Array:
        """A child array whose every element is ``fill_value`` (nothing is written);
        ``dtype`` defaults to float64, as in zarr-python. Other arguments are
        :meth:`create_array`'s."""
        kwargs.setdefault("dtype", ONE_VALUE_DTYPE)
        return self.create_array(name, shape=shape, fill_value=fill_value, **kwargs)

    def zeros(self, *, name: str, shape: Any, **kwargs: Any) -> Array:
        """A child array of zeros (see :meth:`full`)."""
        return self.full(name=name, shape=shape, fill_value=0, **kwargs)

    def ones(self, *, name: str, shape: Any, **kwargs: Any) -> Array:
        """A child array of ones (see :meth:`full`)."""
        return self.full(name=name, shape=shape, fill_value=1, **kwargs)

    def empty(self, *, name: str, shape: Any, **kwargs: Any) -> Array:
        """A child array whose elements are not set: they read as the data type's
        default fill value (see :meth:`full`)."""
        return self.full(name=name, shape=shape, fill_value=kwargs.pop("fill_value", None), **kwargs)

    def full_like(self, *, name: str, data: Any, **kwargs: Any) -> Array:
        """A child array shaped, typed, chunked and encoded like ``data`` (a gpuzarr
        array, or any array with ``shape`` and ``dtype``), every element ``fill_value``
        (by default ``data``'s fill value); other arguments override what is copied."""
        return self.create_array(name, **{**like_arguments(data), **kwargs})

    def zeros_like(self, *, name: str, data: Any, **kwargs: Any) -> Array:
        """A child array of zeros like ``data`` (see :meth:`full_like`)."""
        return self.full_like(name=name, data=data, **{**kwargs, "fill_value": 0})

    def ones_like(self, *, name: str, data: Any, **kwargs: Any) -> Array:
        """A child array of ones like ``data`` (see :meth:`full_like`)."""
        return self.full_like(name=name, data=data, **{**kwargs, "fill_value": 1})

    def empty_like(self, *, name: str, data: Any, **kwargs: Any) -> Array:
        """A child array like ``data`` whose elements are not set (see :meth:`full_like`)."""
        return self.full_like(name=name, data=data, **kwargs)

    def array_values(self) -> Iterator[Array]:
        """The child arrays."""
        return (a for _, a in self.arrays())

    def group_values(self) -> Iterator[Group]:
        """The child groups."""
        return (g for _, g in self.groups())

    def nmembers(self, max_depth: int | None = 0) -> int:
        """How many members :meth:`members` lists for ``max_depth``."""
        return len(self.members(max_depth=max_depth))

    def get(self, path: str, default: Any = None) -> Any:
        """The member at ``path`` (relative, may name a descendant), or ``default``."""
        try:
            return self[path]
        except NodeNotFoundError:
            return default

    def update_attributes(self, new_attributes: Mapping[str, Any]) -> Group:
        """Merge ``new_attributes`` into the attributes (one metadata write); returns
        this group, as zarr-python does."""
        self.attrs.update(new_attributes)
        return self

    def require_groups(self, *names: str) -> tuple[Group, ...]:
        """:meth:`require_group` for each name; every name is tried (as zarr-python
        does), then the first failure, if any, is raised."""
        found: list[Group] = []
        failure: Exception | None = None
        for name in names:
            try:
                found.append(self.require_group(name))
            except Exception as exc:  # (raised below, once every name was tried)
                failure = failure or exc
        if failure is not None:
            raise failure
        return tuple(found)

    def _summary(self) -> list[tuple[str, Any]]:
        return [
            ("Name", self.name),
            ("Type", "Group"),
            ("Zarr format", self.zarr_format),
            ("Read-only", self.read_only),
            ("Store type", type(self._store).__name__),
        ]

    @property
    def info(self) -> str:
        """A summary as text, with zarr-python's fields (it lists nothing in the store)."""
        return summary_text(self._summary())

    def info_complete(self) -> str:
        """:attr:`info` and the number of members, arrays and groups at every depth
        below this group, as zarr-python's ``info_complete()`` counts them (this lists
        the hierarchy in the store)."""
        members = self.members(max_depth=None)
        return summary_text([
            *self._summary(),
            ("No. members", len(members)),
            ("No. arrays", sum(isinstance(m, Array) for _, m in members)),
            ("No. groups", sum(isinstance(m, Group) for _, m in members)),
        ])

    def _forget_consolidated(self) -> None:
        # The consolidated snapshot no longer lists every member once one is added:
        # from now on this object lists the store itself, so the new member shows up.
        # (The stored consolidated metadata is left alone; consolidate again to update it.)
        self._consolidated_stale = True


def same_format_members(members: list[tuple[str, Array | Group]], zarr_format: int) -> list[tuple[str, Array | Group]]:
    """The members (of a ``members(max_depth=None)`` listing) of ``zarr_format``,
    reached through groups of that format only: what a group's consolidated metadata holds.

    Consolidated metadata holds documents of its group's format (a v3 group's entries are
    ``zarr.json`` documents, a v2 ``.zmetadata`` holds ``.zarray``/``.zgroup`` ones); a
    node of the other format, and everything below it, is left out, as zarr-python's
    listing of the group leaves it out.
    """
    kept: list[tuple[str, Array | Group]] = []
    left_out: list[str] = []  # paths ("a/b/") below which nothing is kept
    for name, node in members:  # (parents are listed before their members)
        if node.zarr_format != zarr_format or any(name.startswith(prefix) for prefix in left_out):
            left_out.append(name + "/")
            continue
        kept.append((name, node))
    return kept
