"""The admin API's URL table: the original API's paths plus the scorer's."""

from __future__ import annotations

import logging

from aiohttp import web

from admin_api import views

logger = logging.getLogger(__name__)


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/health", views.health, name="health")
    router.add_get("/ready", views.ready, name="ready")
    router.add_get("/metrics", views.metrics, name="metrics")
    router.add_get("/api/openapi.json", views.openapi, name="openapi")
    router.add_get("/api/model/info", views.model_info, name="model_info")
    router.add_post("/api/model/reload", views.model_reload, name="model_reload")
    router.add_get("/api/model/drift", views.model_drift, name="model_drift")
    router.add_get("/api/mlflow/models", views.mlflow_models, name="mlflow_models")
    router.add_get("/api/mlflow/models/{name}", views.mlflow_model, name="mlflow_model")
    router.add_post("/api/mlflow/models/{name}/transition", views.mlflow_transition, name="mlflow_transition")
    router.add_put("/api/mlflow/models/{name}/aliases/{alias}", views.mlflow_set_alias, name="mlflow_set_alias")
    router.add_delete("/api/mlflow/models/{name}/aliases/{alias}", views.mlflow_delete_alias,
                      name="mlflow_delete_alias")
    router.add_post("/api/predict", views.predict, name="predict")
    router.add_get("/api/fleet", views.fleet, name="fleet")
    router.add_post("/api/webhooks/mlflow", views.mlflow_webhook, name="mlflow_webhook")
