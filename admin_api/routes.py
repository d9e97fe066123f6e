"""The admin API's URL table: the original API's paths plus the scorer's."""

from __future__ import annotations

import logging

from aiohttp import web

from admin_api.audit import audited, setup_audit
from admin_api.guards import setup_guards
from admin_api.views import canary, control, model, performance, predict, probes
from admin_api.views import registry as registry_views

logger = logging.getLogger(__name__)


def setup_routes(app: web.Application) -> None:
    """Every route; the mutating ones are wrapped by ``audited`` so each call lands in the audit trail."""
    setup_audit(app)
    setup_guards(app)
    router = app.router
    router.add_get("/health", probes.health, name="health")
    router.add_get("/ready", probes.ready, name="ready")
    router.add_get("/live", probes.live, name="live")
    router.add_get("/metrics", probes.metrics, name="metrics")
    router.add_get("/api/openapi.json", probes.openapi, name="openapi")
    router.add_get("/api/model/info", model.model_info, name="model_info")
    router.add_post("/api/model/reload", audited("reload")(model.model_reload), name="model_reload")
    router.add_post("/api/model/rollback", audited("rollback")(model.model_rollback), name="model_rollback")
    router.add_get("/api/model/drift", model.model_drift, name="model_drift")
    router.add_get("/api/model/history", model.model_history, name="model_history")
    router.add_get("/api/model/performance", performance.model_performance, name="model_performance")
    router.add_get("/api/canary", canary.get_canary, name="canary")
    router.add_put("/api/canary", audited("canary.set")(canary.put_canary), name="canary_set")
    router.add_post("/api/canary/decide", audited("canary.decide")(canary.decide_canary), name="canary_decide")
    router.add_get("/api/mlflow/models", registry_views.mlflow_models, name="mlflow_models")
    router.add_get("/api/mlflow/models/{name}", registry_views.mlflow_model, name="mlflow_model")
    router.add_post("/api/mlflow/models/{name}/transition",
                    audited("transition")(registry_views.mlflow_transition), name="mlflow_transition")
    router.add_put("/api/mlflow/models/{name}/aliases/{alias}",
                   audited("alias.set")(registry_views.mlflow_set_alias), name="mlflow_set_alias")
    router.add_delete("/api/mlflow/models/{name}/aliases/{alias}",
                      audited("alias.delete")(registry_views.mlflow_delete_alias), name="mlflow_delete_alias")
    router.add_post("/api/predict", predict.predict, name="predict")
    router.add_get("/api/fleet", control.fleet, name="fleet")
    router.add_post("/api/webhooks/mlflow", audited("webhook", who="mlflow-webhook")(control.mlflow_webhook),
                    name="mlflow_webhook")
