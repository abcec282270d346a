"""Zarr data types and their fill values, for format v2 and v3.

A :class:`DataType` ties a Zarr data type (its v3 JSON identity, or a v2 dtype string)
to the NumPy dtype gpuzarr decodes it into. In memory data always uses the native byte
order; the stored byte order is a property of the ``bytes`` codec (v3) or of the v2
dtype string, and the codecs convert on the way in and out.

Fill values are parsed from and encoded to every JSON encoding the specs allow:
numbers, ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, hex bit patterns (``"0x7fc00000"``),
``[re, im]`` pairs for complex types, base64 for byte strings and plain strings for text.

The machine-learning types of the Zarr extension registry (``bfloat16``, the
``float8``/``float6``/``float4`` formats, ``int2``/``int4``/``uint2``/``uint4``), which
tensorstore writes, are held in the NumPy dtypes of the ``ml_dtypes`` package, imported
only when an array of one is met. NumPy cannot change their byte order
(``newbyteorder`` turns them into plain void types), so byte order goes through
:func:`with_byte_order`, which the codecs use for every type.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuzarr._checks import is_int
from gpuzarr.errors import MetadataError, UnsupportedDataTypeError

__all__ = [
    "ML_DATA_TYPES",
    "ML_V2_DATA_TYPES",
    "TORCH_ML_DATA_TYPES",
    "DataType",
    "data_type_from_user",
    "data_type_from_v2",
    "data_type_from_v3",
    "default_fill_value",
    "has_byte_order",
    "int_limits",
    "is_ml_dtype",
    "load_ml_dtypes_named",
    "v2_stored_dtype",
    "with_byte_order",
]

# Fixed-size numeric types: v3 name -> NumPy dtype (native byte order).
_NUMERIC_V3: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}
_NUMERIC_BY_DTYPE: dict[np.dtype, str] = {dt: name for name, dt in _NUMERIC_V3.items()}

#: Machine-learning types of the Zarr extension registry (one name in v3 and in v2, as
#: tensorstore writes them), each held in the ml_dtypes type of that name: name -> kind.
#: Each is one byte per element but bfloat16 (two); the narrow ones keep their bits in
#: the low bits of the byte.
ML_DATA_TYPES: dict[str, str] = {
    "bfloat16": "float",
    "float8_e3m4": "float",
    "float8_e4m3": "float",
    "float8_e4m3b11fnuz": "float",
    "float8_e4m3fn": "float",
    "float8_e4m3fnuz": "float",
    "float8_e5m2": "float",
    "float8_e5m2fnuz": "float",
    "float8_e8m0fnu": "float",
    "float6_e2m3fn": "float",
    "float6_e3m2fn": "float",
    "float4_e2m1fn": "float",
    "int2": "int",
    "int4": "int",
    "uint2": "uint",
    "uint4": "uint",
}

#: Those of them torch holds under the same name, element for element (its int4 has no
#: operations, and its float4 packs two values a byte: neither is taken for these).
TORCH_ML_DATA_TYPES = frozenset(
    {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"}
)

#: Those of them with a Zarr v2 form: tensorstore's, the one v2 writer of these types,
#: less float8_e8m0fnu (tensorstore's v2 fill values of it are not its values: it writes
#: 1.0 as 2**64) and the types tensorstore lacks. In v2, float4_e2m1fn fill values are
#: base64 of the element's byte, as tensorstore writes them; the others are numbers.
ML_V2_DATA_TYPES = frozenset(ML_DATA_TYPES) - {"float8_e8m0fnu", "float8_e4m3", "float6_e2m3fn", "float6_e3m2fn",
                                               "uint2", "uint4"}

_STRING_DTYPE = np.dtypes.StringDType()
_OBJECT_DTYPE = np.dtype(object)
_TIME_UNITS = ("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "μs", "ns", "ps", "fs", "as", "generic")


@dataclass(frozen=True, slots=True)
class DataType:
    """A Zarr data type and the NumPy dtype it is held in.

    ``kind`` groups types that share fill-value and codec rules: ``bool``, ``int``,
    ``uint``, ``float``, ``complex``, ``string`` (variable-length UTF-8), ``bytes``
    (variable-length bytes), ``fixed_bytes`` (NumPy ``S``), ``fixed_str`` (NumPy ``U``),
    ``raw`` (NumPy ``V``), ``datetime`` and ``timedelta``.
    """

    name: str
    dtype: np.dtype
    kind: str
    configuration: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_variable_length(self) -> bool:
        """True for types whose elements have no fixed byte size (string, bytes)."""
        return self.kind in ("string", "bytes")

    @property
    def item_size(self) -> int:
        """Bytes per element in memory (0 for variable-length types)."""
        return 0 if self.is_variable_length else self.dtype.itemsize

    # -- v3 JSON -----------------------------------------------------------------------

    def to_v3_json(self) -> str | dict[str, Any]:
        """The ``data_type`` field of v3 array metadata."""
        if self.configuration:
            return {"name": self.name, "configuration": dict(self.configuration)}
        return self.name

    def parse_fill_value_v3(self, value: Any, where: str = "fill_value") -> Any:
        """Parse a v3 ``fill_value`` JSON value into a NumPy scalar of this type."""
        try:
            return _parse_fill(self, value, v2=False)
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            raise MetadataError(
                f"{where}: invalid fill value {value!r} for data type {self.name!r}: {exc}"
            ) from None

    def encode_fill_value_v3(self, value: Any) -> Any:
        """Encode a fill value (NumPy scalar) as v3 JSON."""
        return _encode_fill(self, value, v2=False)

    # -- v2 JSON -----------------------------------------------------------------------

    def parse_fill_value_v2(self, value: Any, where: str = "fill_value") -> Any:
        """Parse a v2 ``fill_value`` (``null`` allowed) into a NumPy scalar or None."""
        if value is None:
            return None
        try:
            return _parse_fill(self, value, v2=True)
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            raise MetadataError(
                f"{where}: invalid fill value {value!r} for dtype {self.dtype.str!r}: {exc}"
            ) from None

    def encode_fill_value_v2(self, value: Any) -> Any:
        """Encode a fill value as v2 JSON (``None`` stays ``null``)."""
        if value is None:
            return None
        return _encode_fill(self, value, v2=True)

    def cast_fill_value(self, value: Any) -> Any:
        """Convert a user-given fill value into a scalar of this type."""
        if value is None:
            return default_fill_value(self)
        # The JSON encodings are accepted too: "NaN", "Infinity", "0x..." bit patterns
        # for floats, and [re, im] pairs (of numbers or those strings) for complex.
        json_form = (self.kind == "float" and isinstance(value, str)) or (
            self.kind == "complex" and isinstance(value, (list, tuple))
        )
        if json_form:
            try:
                return _parse_fill(self, value, v2=False)
            except (TypeError, ValueError, OverflowError, struct.error) as exc:
                raise ValueError(f"fill_value {value!r} is not a valid {self.name!r} value: {exc}") from None
        if self.kind == "string":
            return str(value)
        if self.kind == "bytes":
            return bytes(value)
        if np.ndim(value) != 0:
            # Anything else must be one value; casting a sequence would give an array.
            raise ValueError(f"fill_value {value!r} for data type {self.name!r} must be a scalar")
        try:
            scalar = np.asarray(value).astype(self.dtype, casting="unsafe")[()]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"fill_value {value!r} cannot be cast to data type {self.name!r}: {exc}"
            ) from None
        if self.kind in ("int", "uint") and not _int_in_range(value, self.dtype):
            raise ValueError(f"fill_value {value!r} is out of range for data type {self.name!r}")
        if self.kind == "float" and is_ml_dtype(self.dtype) and _not_held(value, scalar):
            raise ValueError(f"fill_value {value!r} is not a value data type {self.name!r} holds")
        return scalar


def _int_in_range(value: Any, dtype: np.dtype) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, (int, np.integer)):
        low, high = int_limits(dtype)
        return low <= int(value) <= high
    return True


def _not_held(value: Any, scalar: Any) -> bool:
    """Whether an ml_dtypes float type could not hold the number ``value`` it was cast to
    as ``scalar``: a NaN or infinity the type lacks (ml_dtypes makes them -0.0, its
    largest value or NaN), or a finite number past its range (made NaN or an infinity,
    or its largest value where it saturates)."""
    try:
        given = float(value)
    except OverflowError:  # (an integer past every float)
        return True
    except (TypeError, ValueError):
        return False
    result = float(scalar)
    if math.isnan(given):
        return not math.isnan(result)
    if math.isinf(given):
        return result != given
    if not math.isfinite(result):
        return True
    import ml_dtypes

    return abs(given) > float(ml_dtypes.finfo(np.asarray(scalar).dtype).max) and result != given


def int_limits(dtype: np.dtype) -> tuple[int, int]:
    """The least and greatest value of an integer type (NumPy's or ml_dtypes')."""
    if is_ml_dtype(dtype):
        import ml_dtypes

        info = ml_dtypes.iinfo(dtype)
    else:
        info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def default_fill_value(dt: DataType) -> Any:
    """The fill value zarr-python uses when none is given (or v2's ``null``): zero,
    False, '' or b'', and NaT for datetimes and timedeltas."""
    if dt.kind == "string":
        return ""
    if dt.kind == "bytes":
        return b""
    if dt.kind in ("datetime", "timedelta"):
        return np.array("NaT", dtype=dt.dtype)[()]  # (with the type's unit)
    return np.zeros((), dtype=dt.dtype)[()]


# --------------------------------------------------------------------------------------
# construction


#: A v2 dtype string (NumPy's typestr): byte order, kind, size in bytes, a time unit
#: for datetimes; objects take no size.
_V2_DTYPE = re.compile(r"[<>|=]?(?:[biufcSUV][0-9]+|[mM]8(?:\[[0-9]*[A-Za-zμ]+\])?|O)")

#: The largest fixed-size item NumPy can describe (its itemsize is a C int).
_MAX_ITEM_NBYTES = 2**31 - 1


def _ml_data_type(name: str, where: str) -> DataType:
    """The DataType of a machine-learning type, importing ml_dtypes for it."""
    try:
        import ml_dtypes
    except ImportError:
        raise UnsupportedDataTypeError(
            f"{where}: data type {name!r} needs the ml_dtypes package (pip install ml_dtypes)"
        ) from None
    scalar_type = getattr(ml_dtypes, name, None)
    if scalar_type is None:
        raise UnsupportedDataTypeError(
            f"{where}: data type {name!r} needs a newer ml_dtypes than {ml_dtypes.__version__}"
        )
    return DataType(name, np.dtype(scalar_type), ML_DATA_TYPES[name])


def load_ml_dtypes_named(values: Iterable[Any], where: str) -> None:
    """Import ml_dtypes if one of ``values`` names one of its types. NumPy resolves the
    names (``np.dtype("bfloat16")``) only once ml_dtypes is imported, and third-party
    code (numcodecs' ``astype``, ``delta``...) hands configured names to NumPy."""
    name = next((v for v in values if isinstance(v, str) and v in ML_DATA_TYPES), None)
    if name is not None:
        _ml_data_type(name, where)


def is_ml_dtype(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is one of the ml_dtypes types of :data:`ML_DATA_TYPES`."""
    # (By the scalar type's module: no import of ml_dtypes, and fast enough to ask per
    # chunk, where NumPy's ``dtype.name`` takes microseconds.)
    return dtype.type.__module__ == "ml_dtypes" and dtype.name in ML_DATA_TYPES


_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"


def has_byte_order(dtype: np.dtype) -> bool:
    """Whether an element's stored bytes depend on the byte order: numbers of more than
    one byte (not bool, int8, fixed-size bytes or strings of bytes, raw types)."""
    if dtype.itemsize <= 1:
        return False
    return is_ml_dtype(dtype) or dtype.kind not in "SV"


def with_byte_order(dtype: np.dtype, order: str) -> np.dtype:
    """The dtype that reads and writes elements of ``dtype`` stored in byte ``order``
    (``"<"`` or ``">"``), converting to ``dtype`` with ``astype``.

    For NumPy's types that is ``dtype.newbyteorder(order)``. An ml_dtypes type in the
    native order is itself; in the other order it has no NumPy form, and this returns the
    unsigned integer of its size in that order, whose values are the element's bits:
    convert by ``astype`` to the native unsigned integer, then ``view`` as ``dtype``.
    """
    if dtype.itemsize <= 1:
        return dtype
    if not is_ml_dtype(dtype):
        return dtype if dtype.kind in "SV" else dtype.newbyteorder(order)
    return dtype if order in (_NATIVE_ORDER, "=") else np.dtype(f"{order}u{dtype.itemsize}")


def v2_stored_dtype(value: str) -> np.dtype:
    """The NumPy dtype of a v2 ``dtype`` string as stored (its byte order included):
    a typestr such as ``'>f8'``, or a machine-learning type's name (little-endian)."""
    if value in ML_DATA_TYPES:
        return with_byte_order(_ml_data_type(value, "dtype").dtype, "<")
    return np.dtype(value)


def data_type_from_v3(value: Any, where: str = "data_type") -> DataType:
    """Resolve a v3 ``data_type`` JSON value; unknown types raise UnsupportedDataTypeError."""
    if isinstance(value, str):
        name, config = value, {}
    elif isinstance(value, Mapping) and isinstance(value.get("name"), str):
        name, config = value["name"], value.get("configuration", {})
        extra = set(value) - {"name", "configuration"}
        if extra and not (extra == {"must_understand"} and value["must_understand"] is False):
            raise MetadataError(f"{where}: unknown fields {sorted(extra)} in {value!r}")
        if not isinstance(config, Mapping):
            raise MetadataError(f"{where}: configuration must be an object, got {config!r}")
        config = dict(config)
    else:
        raise MetadataError(f"{where}: expected a string or {{'name': ...}} object, got {value!r}")
    if name in _NUMERIC_V3 and not config:
        dtype = _NUMERIC_V3[name]
        return DataType(name, dtype, _numeric_kind(dtype))
    if name in ML_DATA_TYPES and not config:
        return _ml_data_type(name, where)
    if name == "string" and not config:
        return DataType("string", _STRING_DTYPE, "string")
    if name in ("bytes", "variable_length_bytes") and not config:
        return DataType("bytes", _OBJECT_DTYPE, "bytes")
    if _is_raw_bits_name(name) and not config:
        bits = int(name[1:])
        if bits == 0 or bits % 8:
            raise UnsupportedDataTypeError(f"{where}: raw data type {name!r} is not a whole bytes")
        return DataType(name, np.dtype(f"V{bits // 8}"), "raw")
    if name in ("null_terminated_bytes", "fixed_length_utf32", "raw_bytes"):
        length = config.get("length_bytes")
        if not is_int(length) or not 1 <= length <= _MAX_ITEM_NBYTES:
            raise MetadataError(
                f"{where}: {name!r} needs a positive 'length_bytes' of at most {_MAX_ITEM_NBYTES}, got {length!r}"
            )
        if name == "fixed_length_utf32":
            if length % 4:
                raise MetadataError(f"{where}: fixed_length_utf32 length_bytes must be a multiple of 4")
            return DataType(name, np.dtype(f"U{length // 4}"), "fixed_str", config)
        kind = "fixed_bytes" if name == "null_terminated_bytes" else "raw"
        dtype = np.dtype(f"S{length}") if kind == "fixed_bytes" else np.dtype(f"V{length}")
        return DataType(name, dtype, kind, config)
    if name in ("numpy.datetime64", "numpy.timedelta64"):
        unit, scale = config.get("unit"), config.get("scale_factor")
        if not isinstance(unit, str) or unit not in _TIME_UNITS or not is_int(scale) or not 1 <= scale < 2**31:
            raise MetadataError(
                f"{where}: bad {name} configuration {config!r} (unit one of {sorted(_TIME_UNITS)}, "
                "scale_factor an integer from 1 to 2**31 - 1)"
            )
        code = "M8" if name == "numpy.datetime64" else "m8"
        unit_str = unit if scale == 1 else f"{scale}{unit}"
        kind = "datetime" if code == "M8" else "timedelta"
        return DataType(name, np.dtype(f"{code}[{unit_str}]"), kind, {"unit": unit, "scale_factor": scale})
    raise UnsupportedDataTypeError(f"{where}: unsupported data type {value!r}")


def data_type_from_v2(value: Any, where: str = "dtype", object_codec: str | None = None) -> DataType:
    """Resolve a v2 dtype string such as ``'<i4'``, ``'>f8'``, ``'|S5'`` or ``'|O'``.

    ``object_codec`` is the id of the vlen filter of an object array (``vlen-utf8`` or
    ``vlen-bytes``); object arrays without one cannot be decoded.
    """
    if not isinstance(value, str):
        raise UnsupportedDataTypeError(f"{where}: unsupported v2 dtype {value!r} (structured dtypes are not supported)")
    if value in ML_DATA_TYPES:  # (a bare name, little-endian: tensorstore's v2 form)
        if value not in ML_V2_DATA_TYPES:
            raise UnsupportedDataTypeError(f"{where}: data type {value!r} has no Zarr v2 form; use Zarr v3")
        return _ml_data_type(value, where)
    if not _V2_DTYPE.fullmatch(value):
        # (NumPy also reads shorthands such as '<f' or 'int', whose size depends on
        # the platform; the v2 spec and zarr-python take only typestr with a size.)
        raise UnsupportedDataTypeError(
            f"{where}: unknown v2 dtype {value!r}: expected a byte order, a kind and a size, such as '<f4', '|b1', "
            "'<M8[ns]' or '|O'"
        )
    try:
        stored = np.dtype(value)
    except TypeError:
        raise UnsupportedDataTypeError(f"{where}: unknown v2 dtype {value!r}") from None
    if stored.kind == "O":
        if object_codec == "vlen-utf8":
            return DataType("string", _STRING_DTYPE, "string")
        if object_codec == "vlen-bytes":
            return DataType("bytes", _OBJECT_DTYPE, "bytes")
        raise UnsupportedDataTypeError(
            f"{where}: object dtype {value!r} needs a vlen-utf8 or vlen-bytes filter, "
            f"found {object_codec!r}"
        )
    native = stored.newbyteorder("=") if stored.byteorder in "<>" else stored
    return data_type_from_numpy(native, where)


def data_type_from_numpy(dtype: np.dtype, where: str = "dtype") -> DataType:
    """Map a NumPy dtype (any byte order) to its Zarr data type."""
    if is_ml_dtype(dtype):  # (before the raw types: most of these are NumPy kind "V")
        return _ml_data_type(dtype.name, where)
    native = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
    if native in _NUMERIC_BY_DTYPE:
        return DataType(_NUMERIC_BY_DTYPE[native], native, _numeric_kind(native))
    if isinstance(native, np.dtypes.StringDType):
        return DataType("string", _STRING_DTYPE, "string")
    if native.kind == "S" and native.itemsize > 0:
        return DataType(
            "null_terminated_bytes", native, "fixed_bytes", {"length_bytes": native.itemsize}
        )
    if native.kind == "U" and native.itemsize > 0:
        return DataType(
            "fixed_length_utf32", native, "fixed_str", {"length_bytes": native.itemsize}
        )
    if native.kind == "V" and native.fields is None and native.itemsize > 0:
        # zarr-python's extension name: it reads no "r<bits>" (nor does tensorstore any
        # raw type), so the spec's name would make the array gpuzarr's alone.
        return DataType("raw_bytes", native, "raw", {"length_bytes": native.itemsize})
    if native.kind in "Mm":
        unit, count = np.datetime_data(native)
        name = "numpy.datetime64" if native.kind == "M" else "numpy.timedelta64"
        kind = "datetime" if native.kind == "M" else "timedelta"
        return DataType(name, native, kind, {"unit": unit, "scale_factor": count})
    raise UnsupportedDataTypeError(f"{where}: unsupported data type {dtype!r}")


def _is_raw_bits_name(name: str) -> bool:
    """Whether ``name`` is a v3 raw bits data type name (``"r8"``, ``"r24"``, ...)."""
    return len(name) > 1 and name[0] == "r" and name[1:].isdigit()


def data_type_from_user(value: Any) -> DataType:
    """Resolve what a user passes as ``dtype``: NumPy dtype-likes, ``str``, ``"string"``,
    ``bytes``/``"bytes"`` (variable length), or a v3 data type JSON value."""
    if isinstance(value, DataType):
        return value
    if value is str or value == "string" or value == "str":
        return DataType("string", _STRING_DTYPE, "string")
    if value is bytes or value == "bytes":
        return DataType("bytes", _OBJECT_DTYPE, "bytes")
    if isinstance(value, Mapping):
        return data_type_from_v3(value, "dtype")
    if isinstance(value, str) and (
        value in _NUMERIC_V3 or value in ML_DATA_TYPES or value.startswith("numpy.") or _is_raw_bits_name(value)
    ):
        return data_type_from_v3(value, "dtype")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise UnsupportedDataTypeError(f"dtype: unknown data type {value!r}") from None
    if dtype.kind == "O":
        raise UnsupportedDataTypeError(
            "dtype: object arrays are ambiguous; use dtype=str (variable-length strings) "
            "or dtype=bytes (variable-length bytes)"
        )
    return data_type_from_numpy(dtype, "dtype")


def _numeric_kind(dtype: np.dtype) -> str:
    return {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}[dtype.kind]


# --------------------------------------------------------------------------------------
# fill values

_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _from_hex_bits(value: str, dt: np.dtype) -> Any:
    """A ``"0x..."`` bit pattern (big-endian, exactly two hex digits per byte of the
    type, as the spec writes them) as a scalar of ``dt``."""
    if len(value) != 2 + 2 * dt.itemsize:
        raise ValueError(f"a {dt.itemsize}-byte bit pattern needs {2 * dt.itemsize} hex digits")
    raw = int(value, 16).to_bytes(dt.itemsize, "big")
    # (Through the unsigned integer of the type's size: ml_dtypes types have no
    # big-endian NumPy form.)
    bits = np.frombuffer(raw, dtype=f">u{dt.itemsize}").astype(f"=u{dt.itemsize}")
    return bits.view(dt)[0]


def _bits_hex(value: Any) -> str:
    """A scalar's bit pattern as ``"0x..."``, big-endian (the inverse of _from_hex_bits)."""
    arr = np.asarray(value).reshape(1)
    bits = arr.view(f"=u{arr.dtype.itemsize}").astype(f">u{arr.dtype.itemsize}")
    return "0x" + bits.tobytes().hex()


#: Float types whose v2 fill values tensorstore writes as base64 of the element's bytes.
_V2_BASE64_FILLS = frozenset({"float4_e2m1fn"})


def _base64_of(value: Any, dt: np.dtype) -> str:
    """The bytes of one element of ``dt`` as base64 text (a v2 fill value's form)."""
    return base64.standard_b64encode(np.asarray(value, dtype=dt).tobytes()).decode("ascii")


def _from_base64_bits(value: str, dt: np.dtype) -> Any:
    """A base64 string of exactly one element's bytes as a scalar of ``dt``."""
    raw = base64.standard_b64decode(value.encode("ascii"))
    if len(raw) != dt.itemsize:
        raise ValueError(f"{len(raw)} bytes for a {dt.itemsize}-byte type")
    return np.frombuffer(raw, dtype=dt)[0]


def _parse_float(dt: np.dtype, value: Any) -> Any:
    """One float component: number, special string or hex bit pattern."""
    if isinstance(value, bool):
        raise TypeError("booleans are not floats")
    if isinstance(value, (int, float)):
        if value == 0 and dt.name == "float8_e8m0fnu":
            # The type has no zero. tensorstore writes this for its default fill, the
            # all-zero bits (2**-127): read it as that, or its arrays would not open.
            return np.zeros((), dtype=dt)[()]
        result = dt.type(value)
        if is_ml_dtype(dt) and _not_held(value, result):
            # (ml_dtypes turns what its type cannot hold into NaN, -0.0 or its largest
            # value: a fill value that reads back as another number.)
            raise ValueError(f"{value!r} is not a value {dt.name} holds")
        return result
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            special = _SPECIAL_FLOATS[value]
            result = dt.type(special)
            as_float = float(result)
            if not (math.isnan(as_float) if math.isnan(special) else as_float == special):
                raise ValueError(f"data type {dt.name} has no {value!r}")
            return result
        if value.startswith("0x"):
            return _from_hex_bits(value, dt)
    raise TypeError(f"expected a number, 'NaN', 'Infinity', '-Infinity' or '0x...', got {value!r}")


def _encode_float(value: Any, *, v2: bool = False) -> Any:
    f = float(value)
    if math.isnan(f):
        # Keep a non-canonical NaN's payload visible as its bit pattern (v3 only: v2 has
        # no such encoding; zarr-python refuses it and tensorstore reads it as a number).
        arr = np.asarray(value)
        canonical = np.asarray(np.nan, dtype=arr.dtype)
        if not v2 and arr.tobytes() != canonical.tobytes():
            return _bits_hex(arr)
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return f


def _parse_fill(dt: DataType, value: Any, *, v2: bool) -> Any:
    kind = dt.kind
    if kind == "bool":
        if not isinstance(value, bool):
            if v2 and value in (0, 1):
                return np.bool_(value)
            raise TypeError("expected true or false")
        return np.bool_(value)
    if kind in ("int", "uint"):
        if isinstance(value, str) and value.startswith("0x"):
            return _from_hex_bits(value, dt.dtype)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not an integer")
            value = int(value)
        low, high = int_limits(dt.dtype)
        if not low <= value <= high:
            raise OverflowError(f"out of range [{low}, {high}]")
        return dt.dtype.type(value)
    if kind == "float":
        if v2 and dt.name in _V2_BASE64_FILLS and isinstance(value, str) and value not in _SPECIAL_FLOATS:
            return _from_base64_bits(value, dt.dtype)
        return _parse_float(dt.dtype, value)
    if kind == "complex":
        part = np.dtype(f"f{dt.dtype.itemsize // 2}")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            re, im = (_parse_float(part, v) for v in value)
            # Assign the parts in place: going through Python's complex could alter NaN payloads.
            result = np.zeros((), dtype=dt.dtype)
            result.real, result.imag = re, im
            return result[()]
        if v2 and isinstance(value, (int, float)) and not isinstance(value, bool):
            return dt.dtype.type(value)
        raise TypeError("expected a [real, imaginary] pair")
    if kind == "string":
        if v2 and isinstance(value, (int, float)):
            # zarr-python 2 left object arrays' fill values as given (0 by default), and
            # zarr-python 3 reads a number as its text: so does gpuzarr.
            return str(value)
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if kind == "fixed_str":
        if not isinstance(value, str):
            raise TypeError("expected a string")
        if len(value) > dt.dtype.itemsize // 4:
            # (NumPy would cut it short: the fill value would differ from what reads give.)
            raise ValueError(f"longer than the type's {dt.dtype.itemsize // 4} characters")
        return dt.dtype.type(value)
    if kind in ("bytes", "fixed_bytes", "raw"):
        if isinstance(value, list) and not v2:  # raw types may list their bytes
            raw = bytes(value)
        elif isinstance(value, str):
            raw = base64.standard_b64decode(value.encode("ascii")) if value else b""
        else:
            raise TypeError("expected a base64 string")
        if kind == "bytes":
            return raw
        listed_short = kind == "raw" and isinstance(value, list) and len(raw) < dt.dtype.itemsize
        if len(raw) > dt.dtype.itemsize or listed_short:  # (a list of a raw type's bytes is exact)
            raise ValueError(f"{len(raw)} bytes for a {dt.dtype.itemsize}-byte type")
        if kind == "raw":
            return np.frombuffer(raw.ljust(dt.dtype.itemsize, b"\0"), dtype=dt.dtype)[0]
        return dt.dtype.type(raw)
    if kind in ("datetime", "timedelta"):
        if value == "NaT":
            return np.array("NaT", dtype=dt.dtype)[()]
        if not is_int(value):
            raise TypeError("expected an integer")
        return np.array(value, dtype=np.int64).view(dt.dtype)[()]
    raise TypeError(f"no fill value rule for kind {kind!r}")


def _encode_fill(dt: DataType, value: Any, *, v2: bool) -> Any:
    kind = dt.kind
    if kind == "bool":
        return bool(value)
    if kind in ("int", "uint"):
        return int(value)
    if kind == "float" and v2 and dt.name in _V2_BASE64_FILLS:
        return _base64_of(value, dt.dtype)
    if kind == "float":
        return _encode_float(np.asarray(value, dtype=dt.dtype)[()], v2=v2)
    if kind == "complex":
        c = np.asarray(value, dtype=dt.dtype)[()]
        return [_encode_float(c.real, v2=v2), _encode_float(c.imag, v2=v2)]
    if kind in ("string", "fixed_str"):
        return str(value)
    if kind == "bytes":
        return base64.standard_b64encode(bytes(value)).decode("ascii")
    if kind == "fixed_bytes":
        return _base64_of(value, dt.dtype)
    if kind == "raw":
        raw = np.asarray(value, dtype=dt.dtype).tobytes()
        if v2 or dt.configuration:
            return base64.standard_b64encode(raw).decode("ascii")
        return list(raw)
    if kind in ("datetime", "timedelta"):
        return int(np.asarray(value, dtype=dt.dtype).view(np.int64))
    raise TypeError(f"no fill value rule for kind {kind!r}")
