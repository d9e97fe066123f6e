"""ModelHandle.describe and label: the exact shape /api/model/info reports and the logs name a model by."""

from __future__ import annotations

from consumer.core.handle import ModelHandle
from consumer.core.signature import DEFAULT_PLAN
from schemas.features import FEATURE_COLUMNS
from tests.unit.consumer.handles import Constant


def test_describe_names_every_field() -> None:
    handle = ModelHandle(model=Constant(1.0), name="m", version="3", alias="champion", stage="Production",
                         uri="models:/m/3", run_id="r1", source="registry", loaded_at=12.5, load_seconds=0.123456,
                         flavour="sklearn")
    assert handle.describe() == {
        "name": "m", "version": "3", "alias": "champion", "stage": "Production", "model_uri": "models:/m/3",
        "run_id": "r1", "source": "registry", "loaded_at": 12.5, "load_seconds": 0.1235, "flavour": "sklearn",
        "predict_path": "dataframe", "tree_walk": None, "input_columns": list(FEATURE_COLUMNS), "signature": None,
    }
    assert DEFAULT_PLAN.columns == FEATURE_COLUMNS


def test_label_by_alias_stage_or_neither_and_the_fallback_file() -> None:
    def label(**kwargs: object) -> str:
        return ModelHandle(model=Constant(1.0), name="m", version="3", **kwargs).label  # type: ignore[arg-type]

    assert label(alias="champion", stage="Production") == "m v3 (@champion)"
    assert label(stage="Production") == "m v3 (Production)"
    assert label() == "m v3"
    assert label(source="fallback") == "m v3 [fallback file]"
    assert ModelHandle(model=Constant(1.0), name="m", version="v3").version_number == 0
