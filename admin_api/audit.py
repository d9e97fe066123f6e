"""The audit trail of model changes: who changed what, when, and how it went.

Every mutating admin call (stage transition, alias set/delete, reload, rollback, webhook) and every promotion that
training announces becomes one ``AuditRecord``, written

- as one JSON line on the dedicated logger ``housing.audit`` (route it wherever the platform keeps audit logs),
  and appended to ``AUDIT_LOG_PATH`` when that is set;
- as a tag ``audit.<UTC timestamp>`` on the model version it concerns, holding the same record as compact
  JSON (so the registry itself shows each version's history).

"Who" is the *name* of the admin key the request carried (``ADMIN_API_KEYS`` pairs; ``ADMIN_API_KEY`` is
``admin``), never the key. Recording never fails the call it records: a tag MLflow refuses or a file that
cannot be written is logged as a warning.

Refused calls (no key, wrong key: 401/403) are not written one by one: the auth middleware counts them per
client per minute (``admin_api.refusals``, in memory, no I/O on the event loop), and a worker thread
(``RefusalWriter``) writes one ``refused`` record per client per minute with the count. In the admin app the
file is capped: it is rotated (``AUDIT_LOG_PATH.1`` ... ``.N``, ``AUDIT_LOG_BACKUPS``) before it would reach
``AUDIT_LOG_MAX_BYTES``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from typing import Any, Final

from aiohttp import web

from admin_api.caller import caller_of
from admin_api.errors import ApiError, Handler
from admin_api.keys import registry_key, settings_key
from admin_api.refusals import RefusalCounter, RefusalWindow
from consumer.workers import Worker

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("housing.audit")
"""One JSON object per message; configure its handler to ship the audit trail."""

TAG_PREFIX: Final = "audit."
MAX_TAG_VALUE_CHARS: Final = 4000
"""Below MLflow's model-version tag value limit (5000 on older servers, more on newer)."""
MAX_DETAIL_CHARS: Final = 500
REFUSAL_FLUSH_SECONDS: Final = 5.0
"""How often the refusal writer looks for windows (minutes) that have ended."""


@dataclass(frozen=True)
class AuditRecord:
    """One audited action."""

    at: str
    """When it finished, ISO 8601 UTC with microseconds (``2026-11-26T07:50:12.123456Z``)."""
    who: str
    """Name of the admin key used (``admin`` for ADMIN_API_KEY), ``mlflow-webhook``, ``training:<user>``..."""
    action: str
    """``transition``, ``alias.set``, ``alias.delete``, ``reload``, ``reload.broadcast``, ``rollback``, ``webhook``,
    ``promote``."""
    model_name: str | None
    version: str | None
    alias: str | None = None
    stage: str | None = None
    result: str = "ok"
    """``ok``, or what went wrong: the API's error code (``not_found``, ``unauthorized``, ...)."""
    status: int | None = None
    """HTTP status answered (None outside the API)."""
    detail: str | None = None
    source: str = "admin_api"
    """Which component acted: admin_api, webhook, training."""
    event_id: str | None = None
    """The ModelUpdateEvent announced for it, if any."""
    client: str | None = None
    """``refused`` records: the peer address the refused calls came from."""
    count: int | None = None
    """``refused`` records: how many calls were refused from ``since`` to ``at``."""
    since: str | None = None
    """``refused`` records: the first refused call of the minute (``at`` is the last)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=True, default=str)


def utc_stamp(now: float | None = None) -> str:
    """``2026-11-26T07:50:12.123456Z`` for ``now`` (epoch seconds; default: the current time)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tag_key(record: AuditRecord) -> str:
    """``audit.20261126T075012.123456Z``: MLflow tag keys allow no colons on every platform, so the compact form."""
    return TAG_PREFIX + record.at.replace("-", "").replace(":", "")


def tag_value(record: AuditRecord, limit: int = MAX_TAG_VALUE_CHARS) -> str:
    """The record as compact JSON, shortened (detail first) to fit ``limit`` characters."""
    text = record.to_json()
    if len(text) <= limit:
        return text
    fields = record.as_dict()
    fields["detail"] = ""
    room = limit - len(json.dumps(fields, separators=(",", ":"), sort_keys=True, default=str)) - 3
    fields["detail"] = (record.detail or "")[:max(0, room)] + "..."
    text = json.dumps(fields, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit]


class _AuditFile(RotatingFileHandler):
    """The capped audit file; a failed write raises (to ``AuditLog.write``) instead of printing a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # called inside emit's except block: re-raises what failed


class AuditLog:
    """Writes audit records to the ``housing.audit`` logger, the optional file and the model version's tags.

    :param path: ``AUDIT_LOG_PATH``: also append each record as a JSON line here.
    :param tagger: ``(model_name, version, key, value) -> None`` that sets a model-version tag (blocking);
        None: no tags.
    :param max_bytes: rotate the file before it would reach this size, keeping ``backups`` old files; None
        appends without a cap (a one-shot writer such as ``housing-train``, which adds one line per promotion).
    :param model_name: the served model, named on records that concern no version (refusals).
    """

    def __init__(self, path: str | None = None, tagger: Callable[[str, str, str, str], object] | None = None, *,
                 max_bytes: int | None = None, backups: int = 5, model_name: str | None = None) -> None:
        self.path = path
        self.tagger = tagger
        self.max_bytes = max_bytes
        self.backups = backups
        self.model_name = model_name
        self.refusals = RefusalCounter()
        """Refused calls being counted; ``flush_refusals`` writes the windows that have ended."""
        self._lock = threading.Lock()
        self._file: _AuditFile | None = None

    def write(self, record: AuditRecord) -> None:
        """Log and append ``record`` (blocking, never raises)."""
        line = record.to_json()
        audit_logger.info("%s", line)
        if self.path:
            try:
                with self._lock:
                    self._append(line)
            except OSError as exc:
                logger.warning("audit record not appended to AUDIT_LOG_PATH=%s: %s", self.path, exc)

    def _append(self, line: str) -> None:
        assert self.path
        if self.max_bytes is None:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
            return
        if self._file is None:
            self._file = _AuditFile(self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8",
                                    delay=True)
        self._file.emit(logging.makeLogRecord({"msg": line}))  # formats as the line itself, then flushes

    def flush_refusals(self, *, everything: bool = False, now: float | None = None) -> int:
        """Write one record per refusal window that has ended (all with ``everything``); blocking. How many."""
        windows = self.refusals.due(now, everything=everything)
        for window in windows:
            self.write(refusal_record(window, model_name=self.model_name))
        return len(windows)

    def close(self) -> None:
        """Close the file (a later write opens it again)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def tag(self, record: AuditRecord) -> bool:
        """Tag the record's model version with it (blocking; never raises). True when the tag was set."""
        if self.tagger is None or not record.model_name or not record.version:
            return False
        try:
            self.tagger(record.model_name, record.version, tag_key(record), tag_value(record))
        except Exception as exc:  # the audit trail must not turn a done change into an error
            logger.warning("audit tag not set on %s version %s: %s", record.model_name, record.version, exc)
            return False
        return True

    def record(self, record: AuditRecord, *, tag: bool = True) -> AuditRecord:
        """Write and (when ``tag``) tag; blocking, so call it off the event loop."""
        self.write(record)
        if tag:
            self.tag(record)
        return record


def refusal_record(window: RefusalWindow, *, model_name: str | None) -> AuditRecord:
    """The one audit record of a client's refused calls in one window."""
    kinds = ", ".join(f"{kind} x{n}" for kind, n in window.requests.most_common())
    detail = (f"{window.count} refused call(s) from {window.client} in the minute from {utc_stamp(window.start)}: "
              f"{kinds}")
    return AuditRecord(at=utc_stamp(window.last_at), who="unknown", action="refused", model_name=model_name,
                       version=None, result=window.result, status=window.status, detail=detail[:MAX_DETAIL_CHARS],
                       client=window.client, count=window.count, since=utc_stamp(window.first_at))


class RefusalWriter(Worker):
    """Writes the refusal records of the windows that have ended, every few seconds; all of them when stopped."""

    def __init__(self, log: AuditLog, *, interval: float = REFUSAL_FLUSH_SECONDS) -> None:
        super().__init__("audit-refusals")
        self.log = log
        self.interval = interval

    def _run(self) -> None:
        while not self.sleep(self.interval):
            self._flush(everything=False)
        self._flush(everything=True)

    def _flush(self, *, everything: bool) -> None:
        try:
            self.log.flush_refusals(everything=everything)
        except Exception:  # a record that cannot be built must not end the writer
            logger.exception("writing the refused calls to the audit log failed")


def mlflow_tagger(client: Any) -> Callable[[str, str, str, str], object]:
    """A tagger over an ``MlflowClient``."""
    return lambda name, version, key, value: client.set_model_version_tag(name, version, key, value)


# --- the admin API side ---------------------------------------------------------------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(*values: object) -> str | None:
    for value in values:
        if value is not None and value != "":
            return str(value)
    return None


def record_from_exchange(action: str, *, who: str, match: Mapping[str, str], request_body: object,
                         response_body: object, status: int, error: ApiError | None, default_model: str,
                         now: float | None = None) -> AuditRecord:
    """Build the record of one API call from what was asked and what was answered (pure).

    :param match: the URL's path parameters (``name``, ``alias``).
    :param request_body: the parsed JSON request (anything; unparsable bodies are None).
    :param response_body: the parsed JSON answer on success (None on error).
    """
    asked = request_body if isinstance(request_body, dict) else {}
    answered = response_body if isinstance(response_body, dict) else {}
    event: dict[str, Any] = _dict(answered.get("event"))
    reload: dict[str, Any] = _dict(answered.get("reload"))
    version = _first(answered.get("version"), reload.get("version"), event.get("version"), asked.get("version"),
                     answered.get("previous_version"))
    model_name = _first(match.get("name"), event.get("model_name"), default_model)
    detail: str | None
    if error is not None:
        result, detail = error.error, error.message
    else:
        result = "ok"
        detail = _first(answered.get("announce_error"), reload.get("detail"),
                        f"previous version {answered['previous_version']}" if "previous_version" in answered
                        else None,
                        f"previous stage {answered['previous_stage']}" if "previous_stage" in answered else None,
                        answered.get("status") if action in ("webhook", "reload") else None)
    return AuditRecord(
        at=utc_stamp(now), who=who, action=action, model_name=model_name, version=version,
        alias=_first(match.get("alias"), asked.get("alias"), event.get("alias")),
        stage=_first(answered.get("stage"), asked.get("stage"), event.get("stage")),
        result=result, status=status, detail=(detail or None) and str(detail)[:MAX_DETAIL_CHARS],
        source="webhook" if action == "webhook" else "admin_api", event_id=_first(event.get("event_id")),
    )


def _json_or_none(raw: bytes | str | None) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


audit_log_key: web.AppKey[AuditLog] = web.AppKey("audit_log")


def audit_log_of(app: web.Application) -> AuditLog:
    """The app's AuditLog, made on first use from the settings and the registry client."""
    log = app.get(audit_log_key)
    if log is None:
        settings = app[settings_key]
        registry = app.get(registry_key)
        client = registry.client if registry is not None and settings.mlflow.enabled else None
        log = AuditLog(settings.admin.audit_log_path, mlflow_tagger(client) if client is not None else None,
                       max_bytes=settings.admin.audit_log_max_bytes, backups=settings.admin.audit_log_backups,
                       model_name=settings.model.name)
        if not app.frozen:  # a running app's state is fixed: setup_audit makes it before the start
            app[audit_log_key] = log
    return log


def setup_audit(app: web.Application) -> None:
    """Create the app's AuditLog now (the app's state cannot change once it runs), and run its refusal writer
    while the app runs."""
    audit_log_of(app)
    app.cleanup_ctx.append(_refusal_writer)


async def _refusal_writer(app: web.Application) -> AsyncIterator[None]:
    log = audit_log_of(app)
    writer = RefusalWriter(log).start()
    yield
    await asyncio.to_thread(writer.stop)  # the writer's last round writes every open window
    if writer.alive:
        logger.warning("the audit refusal writer did not stop; refusals still counted are not written")
    elif log.refusals:
        await asyncio.to_thread(log.flush_refusals, everything=True)
    await asyncio.to_thread(log.close)


def audited(action: str, *, who: str | None = None) -> Callable[[Handler], Handler]:
    """Wrap a mutating handler so its outcome (success or error answer) is recorded.

    :param action: what the handler does (``alias.set``, ...).
    :param who: fixed caller name (the webhook); default: the admin key's name from the auth middleware.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            error: ApiError | None = None
            response: web.StreamResponse | None = None
            try:
                response = await handler(request)
                return response
            except ApiError as exc:
                error = exc
                raise
            except web.HTTPException as exc:
                error = ApiError(exc.status, "http_error", exc.reason)
                raise
            except Exception as exc:
                error = ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")
                raise
            finally:
                await _record_exchange(request, action, who, response, error)

        return run

    return wrap


async def _record_exchange(request: web.Request, action: str, who: str | None,
                           response: web.StreamResponse | None, error: ApiError | None) -> None:
    try:
        body = _json_or_none(await request.read()) if request.body_exists else None  # cached by the handler
    except Exception:  # the client went away mid-body: record what is known
        body = None
    answered = _json_or_none(response.text) if isinstance(response, web.Response) else None
    status = response.status if response is not None else (error.status_code if error else 500)
    record = record_from_exchange(action, who=who or caller_of(request), match=dict(request.match_info),
                                  request_body=body, response_body=answered, status=status, error=error,
                                  default_model=request.app[settings_key].model.name)
    await asyncio.to_thread(audit_log_of(request.app).record, record, tag=should_tag(record, answered))


def should_tag(record: AuditRecord, response_body: object) -> bool:
    """Tag the version only when something happened to it: a successful change, or a reload that loaded it."""
    if record.result != "ok" or record.status is None or record.status >= 300:
        return False
    if record.action == "reload":
        return isinstance(response_body, dict) and response_body.get("status") == "loaded"
    return True


def record_refusal(request: web.Request, error: ApiError) -> bool:
    """Count an unauthenticated mutating call (no I/O: the refusal writer writes one record per client per
    minute). True when it is the client's first refusal this minute."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path[:200]
    return audit_log_of(request.app).refusals.add(request.remote or "unknown", f"{request.method} {route}",
                                                  error.error, error.status_code)
