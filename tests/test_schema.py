"""The JSON Schemas, the Arrow schemas derived from them and the data model agree."""
from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import records
from pipeline.schema import CONFIGS, SchemaError, arrow_schema, arrow_type, load_json_schema, validate_row
from tests.helpers import PROV, accepted_row


def _walk(node, arrow_t, nullable, where):
    """Independent check: every JSON Schema node maps onto the Arrow type at the same place."""
    types = node.get("type")
    if "anyOf" in node:
        assert nullable == any(o.get("type") == "null" for o in node["anyOf"]), where
        node = next(o for o in node["anyOf"] if o.get("type") != "null")
        types = node["type"]
    elif isinstance(types, list):
        assert nullable == ("null" in types), where
        types = next(t for t in types if t != "null")
    else:
        assert not nullable, where
    expected = {"string": pa.types.is_string, "integer": pa.types.is_int64,
                "number": pa.types.is_float64, "boolean": pa.types.is_boolean,
                "array": pa.types.is_list, "object": pa.types.is_struct}[types]
    assert expected(arrow_t), f"{where}: {types} vs {arrow_t}"
    if types == "object":
        names = [f.name for f in arrow_t]
        assert names == list(node["properties"]), where
        for f in arrow_t:
            _walk(node["properties"][f.name], f.type, f.nullable, f"{where}.{f.name}")
    if types == "array":
        _walk(node["items"], arrow_t.value_type, arrow_t.value_field.nullable, f"{where}[]")


@pytest.mark.parametrize("config", CONFIGS)
def test_arrow_schema_matches_json_schema(config):
    js = load_json_schema(config)
    schema = arrow_schema(config)
    assert [f.name for f in schema] == list(js["properties"])
    assert set(js["required"]) == set(js["properties"]), "every field is written, even when null"
    assert js["additionalProperties"] is False
    for f in schema:
        _walk(js["properties"][f.name], f.type, f.nullable, f"{config}.{f.name}")


def test_videos_schema_mirrors_the_data_model():
    task_fields = {f.name for f in dataclasses.fields(records.VideoTask)} - set(records.TRANSIENT_FIELDS)
    written = task_fields | {"num_scenes"} | set(records.PROVENANCE_FIELDS)
    assert written == set(load_json_schema("videos")["properties"])
    scene = load_json_schema("videos")["properties"]["scenes"]["items"]["properties"]
    assert [f.name for f in dataclasses.fields(records.Scene)] == list(scene)
    enum = load_json_schema("videos")["properties"]["reject_reason"]["enum"]
    assert set(enum) - {None} == {r.value for r in records.Reason}


def test_row_roundtrips_through_parquet_and_still_validates(tmp_path):
    row = {**accepted_row("abcdefghijk"), **PROV}
    assert validate_row("videos", row) is None
    table = pa.Table.from_pylist([row], schema=arrow_schema("videos"))
    pq.write_table(table, tmp_path / "x.parquet")
    back = pq.read_table(tmp_path / "x.parquet").to_pylist()[0]
    assert validate_row("videos", back) is None
    assert back == json.loads(json.dumps(row))


def test_invalid_rows_report_the_failing_path():
    row = {**accepted_row("abcdefghijk"), **PROV}
    row["scenes"][1]["transition"] = "wipe"
    err = validate_row("videos", row)
    assert err is not None and err.path == "$.scenes[1].transition" and "wipe" in err.message
    row = {**accepted_row("abcdefghijk"), **PROV, "surprise": 1}
    assert "surprise" in validate_row("videos", row).message
    accepted_without_media = {**accepted_row("abcdefghijk"), **PROV, "video_path": None}
    assert validate_row("videos", accepted_without_media) is not None


def test_schema_derivation_rejects_untyped_nodes():
    with pytest.raises(SchemaError):
        arrow_type({"type": ["string", "integer"]})
    with pytest.raises(SchemaError):
        arrow_type({"type": "object", "properties": {"a": {"type": "string"}}})  # open object


def test_typed_model_outputs_mirror_their_schemas():
    """Verification records and captions are dataclasses named exactly as their JSON Schema nodes."""
    verification = next(o for o in load_json_schema("sft")["properties"]["verification"]["anyOf"]
                        if o.get("type") == "object")
    assert [f.name for f in dataclasses.fields(records.Verification)] == list(verification["properties"])
    for config in ("distill",):
        node = next(o for o in load_json_schema(config)["properties"]["verification"]["anyOf"]
                    if o.get("type") == "object")
        assert list(node["properties"]) == list(verification["properties"])
    caption = load_json_schema("videos")["properties"]["captions"]["items"]["properties"]
    assert [f.name for f in dataclasses.fields(records.Caption)] == list(caption)
