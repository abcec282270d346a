"""Zarr v2 and v3 metadata: data types, fill values, array and group documents."""

from gpuzarr.metadata.dtypes import (
    DataType,
    data_type_from_numpy,
    data_type_from_user,
    data_type_from_v2,
    data_type_from_v3,
    default_fill_value,
)
from gpuzarr.metadata.nodes import (
    V2_ARRAY_KEY,
    V2_ATTRS_KEY,
    V2_CONSOLIDATED_KEY,
    V2_GROUP_KEY,
    V3_KEY,
    ArrayMetadata,
    ArrayMetadataV2,
    ArrayMetadataV3,
    ChunkKeyEncoding,
    GroupMetadata,
    json_dumps,
    parse_array_metadata,
    parse_json,
)

__all__ = [
    "V2_ARRAY_KEY",
    "V2_ATTRS_KEY",
    "V2_CONSOLIDATED_KEY",
    "V2_GROUP_KEY",
    "V3_KEY",
    "ArrayMetadata",
    "ArrayMetadataV2",
    "ArrayMetadataV3",
    "ChunkKeyEncoding",
    "DataType",
    "GroupMetadata",
    "data_type_from_numpy",
    "data_type_from_user",
    "data_type_from_v2",
    "data_type_from_v3",
    "default_fill_value",
    "json_dumps",
    "parse_array_metadata",
    "parse_json",
]
