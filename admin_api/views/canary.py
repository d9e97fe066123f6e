"""The canary from the API: GET/PUT /api/canary (its alias and share of keys) and POST /api/canary/decide.

- ``GET /api/canary``: the fleet's canary setting (the registry's ``canary.fraction`` / ``canary.alias`` tags,
  else ``CANARY_FRACTION`` / ``CANARY_ALIAS``), the version this instance serves as canary and why (or why none),
  the versions rolled back, and the gate's policy.
- ``PUT /api/canary`` ``{"fraction": 0.2, "alias": "challenger"}``: writes the tags (so every instance and every
  restarted one agrees), then announces a ``canary`` event; every scorer's canary worker follows it.
- ``POST /api/canary/decide`` ``{"apply": false}``: the gate (``consumer.evaluation.gates``) on the latest
  evaluator snapshot for the canary against the champion; ``apply: true`` carries out a promote or rollback
  (registry first, then the announcement, both audited). This is the operator's override; the automatic decider
  is housing-evaluate (``AUTO_PROMOTE``), which never decides a version that is no longer the canary.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict
from typing import Any

from aiohttp import web

from admin_api.bodies import read_body
from admin_api.errors import ApiError, bad_request, json_response, unavailable
from admin_api.registry import map_mlflow_error, validate_alias
from admin_api.views.common import announce, registry_of, require_mlflow, settings_of, state_of
from admin_api.views.performance import snapshots_of
from config.settings import Settings
from consumer.evaluation.gates import GatePolicy, decide
from consumer.kafka.evaluation_io import EvaluationKafkaError, latest_values
from consumer.models.canary import fleet_canary, promote_canary, reject_canary, set_fleet_canary


def policy_of(settings: Settings) -> GatePolicy:
    return GatePolicy.from_settings(settings.canary)


def parse_canary(body: object) -> tuple[float | None, str | None]:
    """``{"fraction": 0..1, "alias": "..."}`` (at least one) -> (fraction, alias)."""
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the canary request must be a JSON object")
    unknown = sorted(set(body) - {"fraction", "alias"})
    if unknown:
        raise bad_request("unknown_field", f"the canary request has no field {unknown[0]!r}", field=unknown[0])
    if not body:
        raise bad_request("missing_field", "give fraction and/or alias", field="fraction")
    fraction = body.get("fraction")
    if "fraction" in body:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not math.isfinite(fraction) \
                or not 0 <= fraction <= 1:
            raise bad_request("invalid_fraction", "fraction must be a number from 0 to 1", field="fraction")
        fraction = float(fraction)
    alias = validate_alias(body["alias"]) if "alias" in body else None
    return fraction, alias


def parse_decide(body: object) -> bool:
    """``{"apply": bool}`` (empty body: a dry run) -> apply."""
    if body is None:
        return False
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the decide request must be a JSON object")
    unknown = sorted(set(body) - {"apply"})
    if unknown:
        raise bad_request("unknown_field", f"the decide request has no field {unknown[0]!r}", field=unknown[0])
    apply = body.get("apply", False)
    if not isinstance(apply, bool):
        raise bad_request("invalid_apply", "apply must be true or false", field="apply")
    return apply


def _fleet(request: web.Request) -> tuple[str, float]:
    settings = settings_of(request)
    try:
        return fleet_canary(registry_of(request).client, settings.model.name, settings)
    except Exception as exc:
        raise map_mlflow_error(exc, "the canary setting") from exc


async def get_canary(request: web.Request) -> web.Response:
    settings, state = settings_of(request), state_of(request)
    require_mlflow(settings)
    alias, fraction = await asyncio.to_thread(_fleet, request)
    view = state.canary_view
    return json_response({"alias": alias, "fraction": fraction,
                          "serving": {"version": view.version, "fraction": view.fraction, "alias": view.alias,
                                      "detail": view.detail, "rejected": list(view.rejected), "at": view.at},
                          "auto_promote": settings.canary.auto_promote, "dry_run": settings.canary.dry_run,
                          "policy": asdict(policy_of(settings))})


async def put_canary(request: web.Request) -> web.Response:
    settings = settings_of(request)
    fraction, alias = parse_canary(await read_body(request))
    require_mlflow(settings)
    name = settings.model.name

    def write() -> tuple[str, float]:
        try:
            set_fleet_canary(registry_of(request).client, name, fraction=fraction, alias=alias)
        except Exception as exc:
            raise map_mlflow_error(exc, "the canary setting") from exc
        return _fleet(request)

    now_alias, now_fraction = await asyncio.to_thread(write)
    announced = await announce(request, type="canary", model_name=name, alias=now_alias,
                               canary_fraction=now_fraction)
    return json_response({"alias": now_alias, "fraction": now_fraction, **announced})


def _decide(request: web.Request, apply: bool) -> dict[str, Any]:
    settings = settings_of(request)
    client, name = registry_of(request).client, settings.model.name
    try:
        values = latest_values(settings, settings.topics.evaluation, 5.0, purpose="canary-decide")
    except EvaluationKafkaError as exc:
        raise unavailable("kafka_unavailable", f"the evaluator's snapshots could not be read: {exc}") from None
    snapshots = snapshots_of(values)
    if not snapshots:
        raise unavailable("no_evaluation", "no evaluator has published a snapshot yet: run housing-evaluate")
    snapshot = max(snapshots.values(), key=lambda s: int(s.get("published_at", 0)))
    from mlflow.exceptions import MlflowException  # deferred: MLflow takes over a second to import

    alias, _ = _fleet(request)
    try:
        champion = str(client.get_model_version_by_alias(name, settings.model.alias or "champion").version)
        canary = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise ApiError(409, "no_canary", f"no canary to decide on: {exc.message}") from None
    if canary == champion:
        raise ApiError(409, "no_canary", f"@{alias} is v{canary}, the champion itself")
    decision = decide(snapshot, canary_version=canary, champion_version=champion, policy=policy_of(settings))
    body: dict[str, Any] = {"decision": decision.evidence(), "applied": False, "dry_run": not apply}
    if apply and decision.action != "wait":
        evidence = {**decision.evidence(), "decided_by": "admin_api"}
        if decision.action == "promote":
            body["registry"] = promote_canary(client, name, canary, canary_alias=alias,
                                              champion_alias=settings.model.alias or "champion", evidence=evidence)
        else:
            body["registry"] = reject_canary(client, name, canary, canary_alias=alias, evidence=evidence)
        body["applied"] = True
        body["evidence"] = evidence
    return body


async def decide_canary(request: web.Request) -> web.Response:
    settings = settings_of(request)
    apply = parse_decide(await read_body(request, allow_empty=True))
    require_mlflow(settings)
    body = await asyncio.to_thread(_decide, request, apply)
    if body["applied"]:
        decision = body["decision"]
        evidence = json.dumps(body.pop("evidence"), sort_keys=True, default=str)
        if decision["action"] == "promote":
            event = dict(type="promoted", version=decision["canary_version"],
                         alias=settings.model.alias or "champion")
        else:
            event = dict(type="canary", version=decision["canary_version"], alias=settings.canary.alias,
                         canary_fraction=0.0)
        body.update(await announce(request, model_name=settings.model.name, decision=decision["action"],
                                   evidence=evidence, **event))
    return json_response(body)
