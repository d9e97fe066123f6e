"""Edges of compiled trees that mutation testing found untested, without a C compiler (fakes stand for TL2cgen's
compile and library): which compiler is looked for, which models have trees to compile, when the cache is read,
where and how a library is compiled, the background thread, and how a handle checks and then uses a library
(within RTOL, on its input example too, for every prediction)."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tl2cgen
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from consumer.core import compiled_trees
from consumer.core.features import to_columns
from consumer.core.handle import COMPILED_TREES, PER_TREE, ModelHandle
from consumer.core.signature import Signature, Spec
from training.data import features_frame, load_housing
from training.pipeline import build_pipeline

HOUSING = load_housing().sample(400, random_state=3)
TARGET = HOUSING["median_house_value"].to_numpy()
SMALL = np.random.default_rng(0).normal(size=(60, 3))


@pytest.fixture(scope="module")
def gradient_boosting() -> Pipeline:
    model = build_pipeline("hist_gradient_boosting")
    model.set_params(model__max_iter=10)
    return model.fit(features_frame(HOUSING), TARGET)


@pytest.fixture
def enabled(tmp_path: Path) -> Iterator[Path]:
    compiled_trees.configure(enabled=True, cache_dir=tmp_path)
    yield tmp_path
    compiled_trees.configure(enabled=False, cache_dir=None)


def _hgb(**params: Any) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_iter=3, **params).fit(SMALL, SMALL[:, 0])


# --- unavailable_reason ------------------------------------------------------------------------------------------

def _which(known: set[str]) -> Any:
    return lambda name: f"/usr/bin/{name}" if name in known else None


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tl2cgen", None)  # import of tl2cgen fails, naming it
    assert compiled_trees.unavailable_reason() == "tl2cgen not installed"


def test_a_missing_package_without_a_name_is_treelite_or_tl2cgen(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def nameless(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "treelite":
            raise ImportError("broken install")  # no .name
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", nameless)
    assert compiled_trees.unavailable_reason() == "treelite/tl2cgen not installed"


def test_the_compiler_is_cc_or_the_one_CC_names_else_gcc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    for known, reason in (({"cc"}, None), ({"gcc"}, None), ({"cc", "gcc"}, None), (set(), "no C compiler (cc/gcc) on "
                                                                                          "PATH"),
                          ({"mycc"}, "no C compiler (cc/gcc) on PATH")):
        monkeypatch.setattr(compiled_trees.shutil, "which", _which(known))
        assert compiled_trees.unavailable_reason() == reason, known
    monkeypatch.setenv("CC", "mycc")
    monkeypatch.setattr(compiled_trees.shutil, "which", _which({"mycc"}))
    assert compiled_trees.unavailable_reason() is None
    monkeypatch.setattr(compiled_trees.shutil, "which", _which({"cc"}))  # CC names one that is not there
    assert compiled_trees.unavailable_reason() == "no C compiler (cc/gcc) on PATH"


# --- tree_estimator -----------------------------------------------------------------------------------------------

def test_the_tree_estimator_bare_or_last_in_a_pipeline_squared_error_only() -> None:
    bare = _hgb()
    assert compiled_trees.tree_estimator(bare) is bare
    three = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("model", _hgb())]).fit(SMALL,
                                                                                                     SMALL[:, 0])
    assert compiled_trees.tree_estimator(three) is three.steps[-1][1]
    assert compiled_trees.tree_estimator(_hgb(loss="absolute_error")) is None
    assert compiled_trees.tree_estimator(LinearRegression().fit(SMALL, SMALL[:, 0])) is None
    assert compiled_trees.tree_estimator(Pipeline([("model", LinearRegression())])) is None


# --- cached, compile_trees, compile_in_background -----------------------------------------------------------------

class FakeLibrary:
    def __init__(self, library: Path) -> None:
        self.library = library


def test_the_cache_is_read_only_when_on_and_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "trees-x.so"
    library.write_bytes(b"")
    seen: list[Path] = []

    def library_path(estimator: Any, cache_dir: Path) -> tuple[Any, Path]:
        seen.append(cache_dir)
        return None, library

    monkeypatch.setattr(compiled_trees, "library_path", library_path)
    monkeypatch.setattr(compiled_trees, "CompiledTrees", FakeLibrary)
    monkeypatch.setattr(compiled_trees, "check_on_probes", lambda estimator, trees: None)  # a fake library
    try:
        compiled_trees.configure(enabled=False, cache_dir=tmp_path)
        assert compiled_trees.cached(object()) is None
        compiled_trees.configure(enabled=True, cache_dir=None)
        assert compiled_trees.cached(object()) is None
        assert seen == []
        compiled_trees.configure(enabled=True, cache_dir=tmp_path)
        found = compiled_trees.cached(object())
        assert isinstance(found, FakeLibrary) and found.library == library and seen == [tmp_path]
        library.unlink()
        assert compiled_trees.cached(object()) is None
    finally:
        compiled_trees.configure(enabled=False, cache_dir=None)


def test_a_compile_goes_to_the_default_cache_with_the_options_of_its_name(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "not" / "yet"  # the default cache's parents do not exist yet
    monkeypatch.setattr(compiled_trees.tempfile, "gettempdir", lambda: str(temp))
    monkeypatch.setattr(compiled_trees, "CompiledTrees", FakeLibrary)
    monkeypatch.setattr(compiled_trees, "check_on_probes", lambda estimator, trees: None)  # a fake library
    monkeypatch.setenv("CC", "my-cc")
    model = object()
    monkeypatch.setattr(compiled_trees, "library_path", lambda estimator, cache_dir: (model, cache_dir / "t.so"))
    calls: list[tuple[Any, dict[str, Any]]] = []

    def export_lib(treelite_model: Any, **kwargs: Any) -> None:
        calls.append((treelite_model, kwargs))
        Path(kwargs["libpath"]).write_bytes(b"lib")

    monkeypatch.setattr(tl2cgen, "export_lib", export_lib)
    compiled_trees.configure(enabled=True, cache_dir=None)
    try:
        loaded = compiled_trees.compile_trees(object())
        cache = temp / "housing-compiled-trees"
        assert isinstance(loaded, FakeLibrary) and loaded.library == cache / "t.so"
        assert (cache / "t.so").read_bytes() == b"lib" and [p.name for p in cache.iterdir()] == ["t.so"]
        [(compiled, kwargs)] = calls
        assert compiled is model
        assert kwargs["libpath"] != str(cache / "t.so")  # written aside, then renamed into place
        assert {k: v for k, v in kwargs.items() if k != "libpath"} == {
            "toolchain": "my-cc", "params": {"parallel_comp": 1, "quantize": 1}, "nthread": 1,
            "options": list(compiled_trees.COMPILE_OPTIONS)}
        # compiled already: taken from the cache
        assert compiled_trees.compile_trees(object()).library == cache / "t.so" and len(calls) == 1
        monkeypatch.delenv("CC")
        (cache / "t.so").unlink()
        compiled_trees.compile_trees(object())
        assert calls[-1][1]["toolchain"] == "gcc"
    finally:
        compiled_trees.configure(enabled=False, cache_dir=None)


def test_the_background_compile_is_a_named_daemon_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_trees, "compile_trees", lambda estimator: FakeLibrary(Path("x.so")))
    ready: list[Any] = []
    thread = compiled_trees.compile_in_background(object(), ready.append, lambda why: None)
    thread.join(30)
    assert thread.daemon is True and thread.name == "compile-trees"  # a scorer's exit never waits for a compile
    assert [r.library for r in ready] == [Path("x.so")]


# --- the handle: checking and using a library ---------------------------------------------------------------------

class Library:
    """Stands for a compiled library: the estimator's own predictions, scaled by ``factor`` on batches of
    ``wrong_rows`` rows (any, if None), and counting its calls."""

    def __init__(self, estimator: Any, factor: float = 1.0, wrong_rows: int | None = None) -> None:
        self.estimator, self.factor, self.wrong_rows = estimator, factor, wrong_rows
        self.library = Path("trees-fake.so")
        self.calls = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls += 1
        out = self.estimator.predict(features)
        if self.wrong_rows is None or features.shape[0] == self.wrong_rows:
            out = out * self.factor
        return np.asarray(out, dtype=np.float64)


def _with_library(monkeypatch: pytest.MonkeyPatch, library: Any) -> None:
    monkeypatch.setattr(compiled_trees, "unavailable_reason", lambda: None)
    monkeypatch.setattr(compiled_trees, "cached", lambda estimator: library)


def _rows() -> list[dict[str, Any]]:
    return features_frame(HOUSING.iloc[:20]).to_dict("records")


def test_a_library_within_rtol_is_used_for_every_prediction(gradient_boosting: Pipeline, enabled: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    library = Library(gradient_boosting.steps[-1][1], factor=1 + 1e-10)  # inside RTOL 1e-9, outside 1e-12
    _with_library(monkeypatch, library)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.tree_walk == COMPILED_TREES and handle.predict_path == "numpy fast path"
    before = library.calls
    got = handle.predict(to_columns(_rows()))
    assert library.calls == before + 1
    np.testing.assert_allclose(got, gradient_boosting.predict(features_frame(HOUSING.iloc[:20])) * (1 + 1e-10),
                               rtol=1e-15)


def test_a_library_wrong_on_the_input_example_only_is_not_used(gradient_boosting: Pipeline, enabled: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    example = features_frame(HOUSING.iloc[:3])  # the check rows are 6 (every category, a missing value) and these 3
    library = Library(gradient_boosting.steps[-1][1], factor=1.01, wrong_rows=3)
    _with_library(monkeypatch, library)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory", input_example=example)
    assert handle.tree_walk == f"{PER_TREE}: compiled trees failed the check"
    before = library.calls
    handle.predict(to_columns(_rows()))
    assert library.calls == before


def test_a_cache_that_cannot_be_read_keeps_the_per_tree_walk_and_says_why(gradient_boosting: Pipeline,
                                                                          enabled: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_trees, "unavailable_reason", lambda: None)

    def unreadable(estimator: Any) -> None:
        raise PermissionError("cache")

    monkeypatch.setattr(compiled_trees, "cached", unreadable)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.tree_walk == f"{PER_TREE}: PermissionError reading the model's trees"


def test_a_model_whose_trees_cannot_be_read_has_no_tree_walk(gradient_boosting: Pipeline, enabled: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def odd(model: Any) -> None:
        raise AttributeError("no steps")

    monkeypatch.setattr(compiled_trees, "tree_estimator", odd)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    assert handle.fast_path and handle.tree_walk is None


def test_waiting_for_a_compile_gives_up_at_the_timeout(gradient_boosting: Pipeline, enabled: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(compiled_trees, "unavailable_reason", lambda: None)
    monkeypatch.setattr(compiled_trees, "cached", lambda estimator: None)

    def slow(estimator: Any) -> Any:
        release.wait(60)
        raise OSError("stopped")

    monkeypatch.setattr(compiled_trees, "compile_trees", slow)
    handle = ModelHandle(model=gradient_boosting, name="m", version="1", source="memory")
    try:
        assert handle.tree_walk == f"{PER_TREE}, compiling"
        assert handle.wait_compiled(0.01) is False
    finally:
        release.set()
    assert handle.wait_compiled(60) is True
    assert handle.tree_walk == f"{PER_TREE}: compile failed: OSError"


def test_describe_shows_the_signature() -> None:
    signature = Signature(inputs=(Spec("median_income", "double"),), outputs=(Spec(None, "double"),))
    model = ModelHandle(model=LinearRegression(), name="m", version="1", source="memory", signature=signature)
    assert model.describe()["signature"] == {"inputs": ["median_income: double"], "outputs": ["double"]}
    assert ModelHandle(model=LinearRegression(), name="m", version="1", source="memory").describe()["signature"] \
        is None



# --- CompiledTrees: the adapter over TL2cgen's predictor ----------------------------------------------------------

def test_a_library_is_loaded_single_threaded_and_fed_float64_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, dict[str, Any]]] = []
    fed: list[tuple[np.ndarray, dict[str, Any]]] = []

    class Predictor:
        def __init__(self, path: Any, **kwargs: Any) -> None:
            made.append((path, kwargs))

        def predict(self, matrix: Any) -> np.ndarray:
            return np.arange(matrix.shape[0], dtype=np.float32).reshape(-1, 1, 1)  # TL2cgen's (rows, 1, 1)

    class DMatrix:
        def __init__(self, data: np.ndarray, **kwargs: Any) -> None:
            fed.append((data, kwargs))
            self.shape = data.shape

    monkeypatch.setattr(tl2cgen, "Predictor", Predictor)
    monkeypatch.setattr(tl2cgen, "DMatrix", DMatrix)
    trees = compiled_trees.CompiledTrees(Path("/cache/trees-1.so"))
    assert made == [("/cache/trees-1.so", {"nthread": 1})] and trees.library == Path("/cache/trees-1.so")
    columns = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # ints, not contiguous
    out = trees.predict(columns)
    assert out.dtype == np.float64 and out.shape == (3,) and out.tolist() == [0.0, 1.0, 2.0]
    [(data, kwargs)] = fed
    assert kwargs == {"dtype": "float64"}
    assert data.dtype == np.float64 and data.flags.c_contiguous and data.tolist() == columns.tolist()
