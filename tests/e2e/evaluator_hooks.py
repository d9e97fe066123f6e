"""``housing-evaluate`` with test hooks, for tests/e2e/test_decider_kill.py: ``python -m tests.e2e.evaluator_hooks
<point> [housing-evaluate flags]`` (settings from the environment, as for the real one).

The evaluator is the real one (``consumer.evaluation.__main__.main``); only a few of its methods are wrapped:

- every call that changes the registry (alias set or deleted, version tag set) is logged as a ``HOOK registry``
  line, so a test counts the alias moves of every process, the restarted ones included;
- at ``<point>`` (``none``: never) the decider stops *in the main thread*, logs ``HOOK paused at <point>`` and
  waits for the test's kill -9 (its HTTP thread still answers; nothing more is read, committed or moved):

  ``decided``     the decision record produced in the open transaction, before ``commit_transaction``;
  ``committed``   the transaction with the decision committed, before the registry is moved;
  ``moving``      half the registry move done (the first alias call of the decision), before the rest;
  ``applied``     the registry moved, before the next transaction announces the decision;
  ``announcing``  the announcement produced in the open transaction, before ``commit_transaction``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import consumer.evaluation.run as run_module
from consumer.evaluation.decider import CanaryDecider, HealthOf, Output
from consumer.kafka.evaluation_io import EvaluationWriter

POINTS = ("none", "decided", "committed", "moving", "applied", "announcing")
REGISTRY_CALLS = ("set_registered_model_alias", "delete_registered_model_alias", "set_model_version_tag")


def say(line: str) -> None:
    print(f"HOOK {line}", flush=True)


def pause(point: str) -> None:
    say(f"paused at {point}")
    threading.Event().wait()  # until SIGKILL


class LoggingRegistry:
    """The decider's MlflowClient; the calls that change the registry are logged (and ``moving`` pauses)."""

    def __init__(self, client: Any, point: str) -> None:
        self._client, self._point = client, point

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in REGISTRY_CALLS:
            return attribute

        def call(*args: Any) -> Any:
            result = attribute(*args)
            say(f"registry {name} {' '.join(str(a) for a in args[1:3])}")
            if self._point == "moving" and name != "set_model_version_tag":
                pause("moving")
            return result

        return call


def install(point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"evaluator_hooks: point {point!r} is not one of {', '.join(POINTS)}")
    carrying: set[str] = set()  # what the open transaction holds of the decider: "decision", "announcement"
    make_client: Callable[[Any], Any] = run_module._registry_client
    run_module._registry_client = lambda settings: LoggingRegistry(make_client(settings), point)  # type: ignore

    outputs, committed, apply_ = CanaryDecider.outputs, CanaryDecider.committed, CanaryDecider._apply
    commit = EvaluationWriter.commit

    def hooked_outputs(self: CanaryDecider, snapshot: Mapping[str, Any], health: HealthOf | None = None
                       ) -> list[Output]:
        before = len(self.state.decisions)
        out = outputs(self, snapshot, health)
        if len(self.state.decisions) > before:
            carrying.add("decision")
        if any(topic == self.settings.topics.model_updates for topic, _, _ in out):
            carrying.add("announcement")
        return out

    def hooked_commit(self: EvaluationWriter, checkpoint: bytes, snapshot: bytes) -> None:
        if point == "decided" and "decision" in carrying:
            pause(point)
        if point == "announcing" and "announcement" in carrying:
            pause(point)
        carrying.clear()
        commit(self, checkpoint, snapshot)

    def hooked_committed(self: CanaryDecider) -> None:
        if point == "committed" and self._to_apply:
            pause(point)
        committed(self)

    def hooked_apply(self: CanaryDecider, record: Any) -> None:
        apply_(self, record)
        if point == "applied":
            pause(point)

    CanaryDecider.outputs = hooked_outputs  # type: ignore[method-assign]
    CanaryDecider.committed = hooked_committed  # type: ignore[method-assign]
    CanaryDecider._apply = hooked_apply  # type: ignore[method-assign]
    EvaluationWriter.commit = hooked_commit  # type: ignore[method-assign]


if __name__ == "__main__":
    install(sys.argv[1] if len(sys.argv) > 1 else "none")
    from consumer.evaluation.__main__ import main

    sys.exit(main(sys.argv[2:]))
