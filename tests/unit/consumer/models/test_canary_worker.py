"""Issue 14, "bad input and faults": a canary version that fails to load never receives traffic; the champion
serves its keys. CanaryWorker.refresh_now with a registry and a loader that stand in for MLflow (the loading
itself is tested in test_loader_flavours), then the batch scored with what the worker left in the state."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from config.settings import Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import Incoming, score_batch
from consumer.errors import ModelError
from consumer.models.canary import CanaryWorker
from consumer.models.loader import ResolvedVersion
from consumer.state import CanaryRoute, ScorerState
from producer.bad_records import good_record
from schemas.codecs import PredictionEncoder, RecordDecoder, RecordEncoder, WireFormat, decode_prediction


class Constant:
    def __init__(self, value: float) -> None:
        self.value, self.calls = value, 0

    def predict(self, frame: Any) -> np.ndarray:
        self.calls += 1
        return np.full(len(frame["median_income"]), self.value)


class FailedCheck(ModelError):
    reason = "signature_mismatch"


class Registry:
    """The calls CanaryWorker makes of MlflowClient: the fleet's tags and the version's tags."""

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(tags={})

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(version=version, tags={})


class Loader:
    """Resolves @challenger to ``version``; loading it fails when it is in ``broken``."""

    def __init__(self, version: str, broken: set[str]) -> None:
        self.client = Registry()
        self.version, self.broken = version, broken
        self.loaded: list[str] = []

    def resolve(self, *, alias: str | None = None, **_: Any) -> ResolvedVersion:
        return ResolvedVersion("m", self.version, alias, None, None, None)

    def load(self, resolved: ResolvedVersion, *, check: bool = True) -> ModelHandle:
        if resolved.version in self.broken:
            raise FailedCheck(f"version {resolved.version} needs column rooms_per_household")
        self.loaded.append(resolved.version)
        return ModelHandle(model=Constant(3.0), name="m", version=resolved.version, alias=resolved.alias)


@pytest.fixture
def settings() -> Settings:
    return load_settings({"model.name": "m", "canary.fraction": 0.5}, env={}, config_path=None)


def champion_state(settings: Settings) -> tuple[ScorerState, Constant]:
    model = Constant(1.0)
    return ScorerState(settings, model=ModelHandle(model=model, name="m", version="1", alias="champion")), model


def score_with_state(state: ScorerState, n: int = 200) -> list[dict[str, Any]]:
    """One batch as the scoring loop scores it: the champion and whatever canary route the state holds."""
    batch = [Incoming(key=f"record-{i}".encode(), value=RecordEncoder().encode(good_record(i), WireFormat.JSON),
                      topic="housing.records", partition=0, offset=i) for i in range(n)]
    route = state.models.canary
    current = state.models.current
    assert current is not None
    result = score_batch(batch, current, decoder=RecordDecoder(), encoder=PredictionEncoder(),
                         canary=route.handle if route else None, canary_fraction=route.fraction if route else 0.0)
    assert not result.rejected
    return [decode_prediction(s.value) for s in result.scored]


def test_a_canary_that_fails_to_load_gets_no_keys_and_says_why(settings: Settings) -> None:
    state, champion = champion_state(settings)
    worker = CanaryWorker(settings, state, Loader("2", broken={"2"}))  # type: ignore[arg-type]

    view = worker.refresh_now()

    assert state.models.canary is None
    assert view.version is None and view.fraction == 0.5
    assert view.detail.startswith("v2 failed to load (signature_mismatch)"), view.detail
    assert {(p["role"], p["model_version"]) for p in score_with_state(state)} == {("champion", "1")}


def test_the_alias_moved_to_a_version_that_fails_stops_the_old_canary_at_once(settings: Settings) -> None:
    state, _ = champion_state(settings)
    loader = Loader("2", broken={"3"})
    worker = CanaryWorker(settings, state, loader)  # type: ignore[arg-type]
    assert worker.refresh_now().version == "2"
    assert {p["role"] for p in score_with_state(state)} == {"champion", "canary"}  # it did serve

    loader.version = "3"  # @challenger moved on to a version that cannot load
    view = worker.refresh_now()

    assert state.models.canary is None and view.version is None and "v3 failed to load" in view.detail
    assert {(p["role"], p["model_version"]) for p in score_with_state(state)} == {("champion", "1")}
    assert loader.loaded == ["2"]


def test_a_loadable_canary_serves_its_share(settings: Settings) -> None:
    """The control case: the same worker and state serve a canary that loads (so the tests above are not
    passing because nothing ever reaches the canary)."""
    state, _ = champion_state(settings)
    view = CanaryWorker(settings, state, Loader("2", broken=set())).refresh_now()  # type: ignore[arg-type]
    assert view.version == "2" and isinstance(state.models.canary, CanaryRoute)
    roles = [p["role"] for p in score_with_state(state)]
    assert 0 < roles.count("canary") < len(roles)
