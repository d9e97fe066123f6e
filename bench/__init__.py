"""Benchmarks of the housing stream scorer (``make bench`` = ``python -m bench``).

- ``bench.throughput``: records/s of a naive per-record loop, a minimal batched transactional loop and
  housing-scorer (exactly-once and at-least-once), on the same records and model.
- ``bench.latency``: produce -> visible-prediction latency at a fixed offered rate, the scorer's peak RSS,
  and a small sweep of BATCH_MAX_RECORDS / BATCH_MAX_WAIT_MS.
- ``bench.reload``: model-update event -> first prediction by the new version, and the throughput dip.

Results: ``bench/results/benchmarks.json`` and PNG plots beside it. Benchmarks measure; they assert nothing.
"""
