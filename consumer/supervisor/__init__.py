"""``housing-scorer --workers N``: one parent process, N scoring worker processes in one consumer group.

- ``policy``: when to restart a worker that ended and how long to wait first (pure, no processes).
- ``metrics``: the parent's own metrics and the merge of the workers' Prometheus expositions (pure text).
- ``worker``: the worker's side: report its admin API's address to the parent, stop when the parent is gone.
- ``parent``: starts, watches, restarts and stops the workers (asyncio subprocesses).
- ``http``: the parent's one admin API: probes and /metrics over all workers, every other route forwarded.

Imports point down only: nothing here imports the scorer's service or the admin API (the parent does not
load a model, MLflow or scikit-learn); ``consumer/__main__.py`` wires it.
"""
