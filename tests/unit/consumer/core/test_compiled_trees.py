"""Compiled tree ensembles: used only once they predict what the model does (relative 1e-9), compiled once per
model content and then taken from the cache, and never used when off, unavailable or wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from consumer.core import compiled_trees
from consumer.core.features import to_columns, to_frame
from consumer.core.handle import COMPILED_TREES, PER_TREE, ModelHandle
from schemas.examples import EXAMPLE_RECORD
from training.data import features_frame, load_housing
from training.pipeline import build_pipeline

HOUSING = load_housing().sample(600, random_state=2)
TARGET = HOUSING["median_house_value"].to_numpy()
WAIT_SECONDS = 120.0  # a bound on a small compile, not a pause: wait_compiled returns as soon as it is done

needs_compiler = pytest.mark.skipif(compiled_trees.unavailable_reason() is not None,
                                    reason=f"compiled trees unavailable: {compiled_trees.unavailable_reason()}")


@pytest.fixture(scope="module")
def gradient_boosting() -> Pipeline:
    model = build_pipeline("hist_gradient_boosting")
    model.set_params(model__max_iter=20)
    return model.fit(features_frame(HOUSING), TARGET)


def rows() -> list[dict[str, object]]:
    records = features_frame(HOUSING.iloc[:300]).to_dict("records")
    return records + [{**EXAMPLE_RECORD, "total_bedrooms": None}, {**EXAMPLE_RECORD, "ocean_proximity": "MARS"}]


def test_off_by_default_the_per_tree_walk_serves(gradient_boosting: Pipeline) -> None:
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.tree_walk == PER_TREE
    assert handle.describe()["tree_walk"] == PER_TREE
    assert handle.wait_compiled(0)
    frame = to_frame(rows())
    np.testing.assert_array_equal(handle.predict(to_columns(rows())), gradient_boosting.predict(frame))


def test_other_models_have_no_tree_walk(cache: Path) -> None:
    linear = build_pipeline("linear_regression").fit(features_frame(HOUSING), TARGET)
    handle = ModelHandle(model=linear, name="m", version="1", source="memory")
    assert handle.tree_walk is None
    assert not list(cache.iterdir())


@needs_compiler
def test_compiled_after_the_background_compile_then_from_the_cache(gradient_boosting: Pipeline, cache: Path) -> None:
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.tree_walk in (f"{PER_TREE}, compiling", COMPILED_TREES)
    assert handle.wait_compiled(WAIT_SECONDS)
    assert handle.tree_walk == COMPILED_TREES
    assert handle.describe()["tree_walk"] == COMPILED_TREES
    expected = gradient_boosting.predict(to_frame(rows()))
    got = handle.predict(to_columns(rows()))
    np.testing.assert_allclose(got, expected, rtol=compiled_trees.RTOL, atol=0)
    assert [p.suffix for p in cache.iterdir()] == [".so"]
    # the next handle of the same model takes the library at once, without a compile
    again = ModelHandle(model=gradient_boosting, name="m", version="2", source="memory")
    assert again.tree_walk == COMPILED_TREES
    assert again._compile_thread is None  # noqa: SLF001 - the absence of a compile is the point


@needs_compiler
def test_a_library_that_disagrees_with_the_model_is_not_used(gradient_boosting: Pipeline, cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = compiled_trees.CompiledTrees.predict
    monkeypatch.setattr(compiled_trees.CompiledTrees, "predict", lambda self, x: real(self, x) * (1 + 1e-7))
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.wait_compiled(WAIT_SECONDS)
    assert handle.tree_walk == f"{PER_TREE}: compiled trees failed the check"
    frame = to_frame(rows())
    np.testing.assert_array_equal(handle.predict(to_columns(rows())), gradient_boosting.predict(frame))


def test_a_failed_compile_keeps_the_per_tree_walk(gradient_boosting: Pipeline, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_trees, "unavailable_reason", lambda: None)

    def broken(estimator: object) -> compiled_trees.CompiledTrees:
        raise OSError("cc: not found")

    monkeypatch.setattr(compiled_trees, "compile_trees", broken)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.wait_compiled(WAIT_SECONDS)
    assert handle.tree_walk == f"{PER_TREE}: compile failed: OSError"
    frame = to_frame(rows())
    np.testing.assert_array_equal(handle.predict(to_columns(rows())), gradient_boosting.predict(frame))


def test_without_a_compiler_it_says_why(gradient_boosting: Pipeline, cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_trees.shutil, "which", lambda name: None)
    assert compiled_trees.unavailable_reason() == "no C compiler (cc/gcc) on PATH"
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.tree_walk == f"{PER_TREE}: no C compiler (cc/gcc) on PATH"
    assert not list(cache.iterdir())
