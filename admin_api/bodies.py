"""Request bodies of the admin API: parsed and checked before any handler acts on them (pure, no I/O but
``read_body``).

Every ``parse_*`` function takes the decoded JSON and returns exactly what the handler needs, or raises an
``ApiError`` 400 with a JSON body naming the code (``malformed_json``, ``unknown_field``, ``wrong_type``,
``missing_field``, ``invalid_record``, ...) and, where one is to blame, the ``field``. Names, stages, aliases
and versions follow the registry's rules (``admin_api.registry.validate_*``); prediction records are checked
like the stream's (``schemas.validation.validate_record``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, NoReturn

from aiohttp import web

from admin_api.errors import bad_request
from admin_api.registry import validate_alias, validate_stage, validate_version
from schemas.errors import ValidationError
from schemas.validation import validate_record

MAX_PREDICT_RECORDS: Final = 5000


# --- JSON ---------------------------------------------------------------------------------------------------
def parse_json(raw: bytes, *, allow_empty: bool = False) -> object:
    """Parse a request body; empty bodies are ``{}`` when ``allow_empty``."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise bad_request("missing_body", "a JSON request body is required")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("malformed_json", "the request body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request("malformed_json", f"the request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def read_body(request: web.Request, *, allow_empty: bool = False) -> object:
    """The request's JSON body (aiohttp caches the bytes, so the audit trail can read them again)."""
    return parse_json(await request.read(), allow_empty=allow_empty)


# --- fields -------------------------------------------------------------------------------------------------
def _object(body: object, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("invalid_body", f"{what} must be a JSON object, got {type(body).__name__}")
    return body


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request("unknown_field", f"{what} has unknown field(s) {unknown[:5]}; allowed: {list(allowed)}",
                          field=unknown[0])


def _bool(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request("wrong_type", f"{name} must be true or false", field=name)
    return value


# --- the bodies -----------------------------------------------------------------------------------------------
class ReloadRequestBody(NamedTuple):
    force_mlflow: bool
    version: str | None
    alias: str | None
    stage: str | None
    broadcast: bool


RELOAD_FIELDS: Final = ("force_mlflow", "version", "alias", "stage", "broadcast")


def parse_reload(body: object) -> ReloadRequestBody:
    """``{"force_mlflow": true, "version": "3" | "alias": "champion" | "stage": "Production", "broadcast": b}``."""
    fields = _object(body, "the reload request")
    _only(fields, RELOAD_FIELDS, "the reload request")
    # A field that is present must be valid (null is not "absent": leave the field out instead).
    return ReloadRequestBody(
        force_mlflow=_bool(fields, "force_mlflow"),
        version=validate_version(fields["version"]) if "version" in fields else None,
        alias=validate_alias(fields["alias"]) if "alias" in fields else None,
        stage=validate_stage(fields["stage"]) if "stage" in fields else None,
        broadcast=_bool(fields, "broadcast"),
    )


TRANSITION_FIELDS: Final = ("version", "stage", "archive_existing")
ACTIVE_STAGES: Final = ("Staging", "Production")


def parse_transition(body: object) -> tuple[str, str, bool]:
    """``{"version": "4", "stage": "Production", "archive_existing": true}`` -> (version, stage, archive)."""
    fields = _object(body, "the transition request")
    _only(fields, TRANSITION_FIELDS, "the transition request")
    if "version" not in fields:
        raise bad_request("missing_field", "version is required", field="version")
    if "stage" not in fields:
        raise bad_request("missing_field", "stage is required", field="stage",
                          allowed=["None", "Staging", "Production", "Archived"])
    version, stage, archive = validate_version(fields["version"]), validate_stage(fields["stage"]), _bool(
        fields, "archive_existing")
    if archive and stage not in ACTIVE_STAGES:
        raise bad_request("invalid_stage", f"archive_existing only applies to {' and '.join(ACTIVE_STAGES)} "
                          f"(the stages MLflow archives others from), not {stage}", field="archive_existing")
    return version, stage, archive


def parse_alias_body(body: object) -> str:
    """``{"version": "3"}`` -> the version the alias should point at."""
    fields = _object(body, "the alias request")
    _only(fields, ("version",), "the alias request")
    if "version" not in fields:
        raise bad_request("missing_field", "version is required", field="version")
    return validate_version(fields["version"])


def parse_rollback(body: object) -> str | None:
    """``{"version": "3"}`` -> the version to roll back to; ``{}`` -> None (the version served before this one)."""
    fields = _object(body, "the rollback request")
    _only(fields, ("version",), "the rollback request")
    return validate_version(fields["version"]) if "version" in fields else None


def parse_predict(body: object) -> tuple[list[dict[str, Any]], bool]:
    """One record object or a list of them -> (clean records, was_single); same checks as the stream."""
    single = isinstance(body, dict)
    items: list[Any]
    if isinstance(body, dict):
        items = [body]
    elif isinstance(body, list):
        items = body
        if not items:
            raise bad_request("invalid_body", "the list of records is empty")
        if len(items) > MAX_PREDICT_RECORDS:
            raise bad_request("too_many_records",
                              f"at most {MAX_PREDICT_RECORDS} records per request, got {len(items)}")
    else:
        raise bad_request("invalid_body", "the body must be a record object or a list of record objects")
    records = []
    for index, item in enumerate(items):
        where = {} if single else {"index": index}
        if not isinstance(item, dict):
            raise bad_request("invalid_record", f"record {index} must be a JSON object", reason="not_an_object",
                              **where)
        try:
            records.append(validate_record(item))
        except ValidationError as exc:
            raise bad_request("invalid_record", exc.message, reason=exc.reason, field=exc.field, **where) from None
    return records, single
