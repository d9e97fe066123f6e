"""The MLflow registry endpoints (/api/mlflow/models...): list, details, stage transitions and aliases.

Every change is announced on the control topic afterwards (``announce``), so every scorer acts on it; a
change the broker did not acknowledge still succeeds, with ``announced: false`` and the reason.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from admin_api.bodies import parse_alias_body, parse_transition, read_body
from admin_api.errors import json_response
from admin_api.registry import validate_alias, validate_model_name
from admin_api.views.common import announce, registry_of, require_mlflow, settings_of


async def mlflow_models(request: web.Request) -> web.Response:
    require_mlflow(settings_of(request))
    models = await asyncio.to_thread(registry_of(request).list_models)
    return json_response({"registered_models": models, "count": len(models)})


async def mlflow_model(request: web.Request) -> web.Response:
    require_mlflow(settings_of(request))
    name = validate_model_name(request.match_info["name"])
    return json_response(await asyncio.to_thread(registry_of(request).model_details, name))


async def mlflow_transition(request: web.Request) -> web.Response:
    require_mlflow(settings_of(request))
    name = validate_model_name(request.match_info["name"])
    version, stage, archive = parse_transition(await read_body(request))
    result = await asyncio.to_thread(registry_of(request).transition, name, version, stage, archive)
    kind = "promoted" if stage in ("Staging", "Production") else "reload"
    announced = await announce(request, type=kind, model_name=name, version=version, stage=stage)
    return json_response({**result, **announced})


async def mlflow_set_alias(request: web.Request) -> web.Response:
    require_mlflow(settings_of(request))
    name = validate_model_name(request.match_info["name"])
    alias = validate_alias(request.match_info["alias"])
    version = parse_alias_body(await read_body(request))
    result = await asyncio.to_thread(registry_of(request).set_alias, name, alias, version)
    announced = await announce(request, type="promoted", model_name=name, version=version, alias=alias)
    return json_response({**result, **announced})


async def mlflow_delete_alias(request: web.Request) -> web.Response:
    require_mlflow(settings_of(request))
    name = validate_model_name(request.match_info["name"])
    alias = validate_alias(request.match_info["alias"])
    result = await asyncio.to_thread(registry_of(request).delete_alias, name, alias)
    announced = await announce(request, type="reload", model_name=name, alias=alias)
    return json_response({**result, **announced})
