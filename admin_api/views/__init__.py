"""The admin API's handlers, by concern: ``probes`` (/health, /ready, /metrics, the OpenAPI document),
``model`` (the model being served: info, reload, drift, history), ``registry`` (the MLflow registry),
``predict`` (HTTP predictions) and ``control`` (the fleet view and the MLflow webhook receiver).

Handlers stay thin: read the request, parse it (``admin_api.bodies``), call the piece that does the work, shape
the answer. Every blocking call (MLflow, Kafka, model prediction) runs in a worker thread via
``asyncio.to_thread``, so the event loop keeps answering while the scorer is busy. The URL table is
``admin_api.routes``.
"""
