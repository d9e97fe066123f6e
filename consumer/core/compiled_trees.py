"""Compiled tree ensembles: a HistGradientBoostingRegressor's or LightGBM booster's trees as native code
(Treelite + TL2cgen).

scikit-learn walks each of the ~200 trees over the batch in turn (its compiled walk, one call per tree: the fast
path in consumer/core/fastpath.py). TL2cgen turns the whole ensemble into one C function of nested ifs, compiled
once per model with the machine's C compiler (``cc -O1``, about 2 s of CPU for 165 trees of 31 leaves) and
cached on disk by the model's content; it predicts the same batch in about a quarter of the CPU (1.2 vs 4.5 µs
per record at 1,000 records). A LightGBM booster (bare, an ``LGBMRegressor``, or a pipeline's estimator) goes
the same way, except where Treelite does not reproduce LightGBM's missing-value handling (``zero_as_missing``,
``use_missing=false``) or its trees (``linear_tree``): those keep LightGBM's own predict.

It is used only after it predicted what the estimator's own predict does on ``PROBE_ROWS`` random feature rows
(scales from 0.01 to 10^4, with zeros and NaNs in every column) and on the check rows of the fast path (every
category, a missing value, the version's input example), within ``RTOL`` (relative 1e-9; measured differences
are ~2e-15, from summing the same floats in another order); otherwise, or without a C compiler,
TL2cgen or Treelite, the per-tree walk stays. A version whose library is not cached yet starts on the per-tree
walk and moves to the compiled one when its compile (a background thread) has finished and passed the check:
loading and hot reloads never wait for a compiler. ``ModelHandle.describe()['tree_walk']`` says which a version
uses.

Off unless ``configure`` turned it on (the scorer does, from ``MODEL_COMPILED_TREES``): a test or tool that
builds handles never starts a compiler.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

logger = logging.getLogger(__name__)

RTOL: Final = 1e-9
"""Relative tolerance of the check against ``model.predict`` (the per-tree walk is held to 1e-12)."""
FAILED_CHECK: Final = "compiled trees failed the check"
PROBE_ROWS: Final = 2_000
"""Random rows the compiled trees must predict as the estimator does before they are used."""
LIGHTGBM_NOT_COMPILED: Final = (("zero_as_missing", True), ("use_missing", False), ("linear_tree", True))
"""LightGBM parameters whose models Treelite does not reproduce (measured: a zero_as_missing booster differed by
0.35 on rows with zeros): such boosters keep LightGBM's predict."""
COMPILE_OPTIONS: Final = ("-O1",)
"""-O2/-O3 take 2-5x longer to compile for no faster predictions (measured 1.17 vs 1.28 µs per record)."""

TreePredict = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Config:
    enabled: bool = False
    cache_dir: Path | None = None


_config = _Config()
_compile_lock = threading.Lock()  # one compile at a time per process: it is a whole core for seconds


def configure(*, enabled: bool, cache_dir: str | os.PathLike[str] | None) -> None:
    """Turn compiled trees on or off for handles built from now on (the scorer calls this at start-up)."""
    _config.enabled = enabled
    _config.cache_dir = Path(cache_dir).expanduser() if cache_dir else None


def enabled() -> bool:
    return _config.enabled


def unavailable_reason() -> str | None:
    """Why trees cannot be compiled on this machine (a missing package or C compiler), or None."""
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'treelite/tl2cgen'} not installed"
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        return "no C compiler (cc/gcc) on PATH"
    return None


def tree_estimator(model: Any) -> Any | None:
    """The tree ensemble at the end of ``model`` (bare or a Pipeline's estimator) that compiled trees are for: a
    squared-error HistGradientBoostingRegressor (its trees' sum is the prediction) or a LightGBM booster (see
    ``not_compiled_reason``); else None."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if is_booster(estimator):
        return _compilable_booster(estimator)
    if type(estimator) is not HistGradientBoostingRegressor or estimator.loss != "squared_error" \
            or estimator.n_trees_per_iteration_ != 1:
        return None
    return estimator


def _compilable_booster(estimator: Any) -> Any | None:
    import lightgbm

    if isinstance(estimator, lightgbm.LGBMRegressor) and estimator.__sklearn_is_fitted__():
        estimator = estimator.booster_
    return estimator if isinstance(estimator, lightgbm.Booster) else None


def not_compiled_reason(estimator: Any) -> str | None:
    """Why ``estimator`` (from ``tree_estimator``) is never compiled, or None: a LightGBM booster with one of the
    parameters of ``LIGHTGBM_NOT_COMPILED``."""
    if not is_booster(estimator):
        return None
    params = estimator.params or {}
    for name, value in LIGHTGBM_NOT_COMPILED:
        if params.get(name) == value:
            return f"{name}={str(value).lower()} is not compiled"
    return None


class CompiledTreesDisagree(ValueError):
    """Compiled trees that do not predict what their estimator does: not used."""


def is_booster(estimator: Any) -> bool:
    """A LightGBM model (what ``tree_estimator`` returns for one is its booster)."""
    return type(estimator).__module__.split(".")[0] == "lightgbm"


def _feature_count(estimator: Any) -> int:
    return int(estimator.num_feature()) if is_booster(estimator) else int(estimator.n_features_in_)


def probe_rows(features: int, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that reach many leaves and both sides of the missing-value branches: each row on its own scale
    (0.01 to 10^4, either sign), with exact zeros and NaNs in every column."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, features)) * 10.0 ** rng.integers(-2, 5, size=(rows, 1))
    matrix[rng.random(matrix.shape) < 0.05] = 0.0
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    return matrix


def check_on_probes(estimator: Any, trees: CompiledTrees, rtol: float = RTOL) -> None:
    """Raise ``CompiledTreesDisagree`` unless ``trees`` predict what ``estimator`` does on the probe rows."""
    matrix = probe_rows(_feature_count(estimator))
    expected = np.asarray(estimator.predict(matrix), dtype=np.float64).reshape(-1)
    got = trees.predict(matrix)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=0.0, equal_nan=True):
        worst = float(np.nanmax(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise CompiledTreesDisagree(f"the compiled trees disagree with the model on probe rows (largest difference "
                                    f"{worst:g})")


class CompiledTrees:
    """One compiled ensemble, loaded from its shared library."""

    def __init__(self, library: Path) -> None:
        import tl2cgen

        self.library = library
        self._dmatrix = tl2cgen.DMatrix
        self._predictor = tl2cgen.Predictor(str(library), nthread=1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        matrix = self._dmatrix(np.ascontiguousarray(features, dtype=np.float64), dtype="float64")
        return np.asarray(self._predictor.predict(matrix), dtype=np.float64).reshape(-1)


def _treelite_model(estimator: Any) -> Any:
    import treelite
    import treelite.sklearn

    if is_booster(estimator):
        return treelite.frontend.from_lightgbm(estimator)
    return treelite.sklearn.import_model(estimator)


def library_path(estimator: Any, cache_dir: Path) -> tuple[Any, Path]:
    """(the Treelite model, where its compiled library is cached): named by the model's content, the TL2cgen
    version and the compile options, so a changed model or compiler setting never reuses a stale library."""
    import tl2cgen

    model = _treelite_model(estimator)
    digest = hashlib.sha256(bytes(model.serialize_bytes()))
    digest.update(f"tl2cgen {tl2cgen.__version__} {' '.join(COMPILE_OPTIONS)}".encode())
    return model, cache_dir / f"trees-{digest.hexdigest()[:32]}.so"


def cached(estimator: Any) -> CompiledTrees | None:
    """The already-compiled library of ``estimator``, or None (not compiled yet, or compiled trees are off).

    :raises CompiledTreesDisagree: the library does not predict what ``estimator`` does (``check_on_probes``).
    """
    if not _config.enabled or _config.cache_dir is None:
        return None
    _, path = library_path(estimator, _config.cache_dir)
    if not path.exists():
        return None
    trees = CompiledTrees(path)
    check_on_probes(estimator, trees)
    return trees


def compile_trees(estimator: Any) -> CompiledTrees:
    """Compile ``estimator``'s trees into the cache (or take the cached library), load and check them.

    :raises Exception: whatever Treelite, TL2cgen or the compiler raised; ``CompiledTreesDisagree``.
    """
    import tl2cgen

    cache_dir = _config.cache_dir or Path(tempfile.gettempdir()) / "housing-compiled-trees"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _compile_lock:
        model, path = library_path(estimator, cache_dir)
        if not path.exists():
            # another scorer on the machine may compile the same model: write aside, then rename atomically
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.so")
            tl2cgen.export_lib(model, toolchain=os.environ.get("CC", "gcc"), libpath=str(partial),
                               params={"parallel_comp": 1, "quantize": 1}, nthread=1,
                               options=list(COMPILE_OPTIONS))
            os.replace(partial, path)
    trees = CompiledTrees(path)
    check_on_probes(estimator, trees)
    return trees


def compile_in_background(estimator: Any, on_ready: Callable[[CompiledTrees], None],
                          on_failed: Callable[[str], None]) -> threading.Thread:
    """Compile on a daemon thread; ``on_ready`` gets the loaded library, ``on_failed`` the reason."""

    def run() -> None:
        try:
            trees = compile_trees(estimator)
        except CompiledTreesDisagree as exc:
            logger.warning("not using the compiled trees: %s", exc)
            on_failed(FAILED_CHECK)
            return
        except Exception as exc:
            logger.warning("compiling the model's trees failed (the per-tree walk stays): %s: %s",
                           type(exc).__name__, exc)
            on_failed(f"compile failed: {type(exc).__name__}")
            return
        on_ready(trees)

    thread = threading.Thread(target=run, name="compile-trees", daemon=True)
    thread.start()
    return thread
