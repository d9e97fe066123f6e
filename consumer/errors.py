"""The scorer's errors, under one root. Each says whether trying again can help (``retriable``), which is
what the loop, the reloader and the admin API decide on."""

from __future__ import annotations


class ScorerError(Exception):
    """Root of the scorer's errors; the message says what went wrong and, where it can, what to fix."""

    retriable = False
    """True when the same call may succeed later without anyone changing anything."""


class ScorerFatalError(ScorerError, RuntimeError):
    """The scorer cannot go on; the message says what to fix. Uncommitted work is aborted, nothing is lost."""


class BatchFailed(ScorerError):
    """A batch could not be committed; it was aborted and will be consumed again."""

    retriable = True


class TransactionStuck(ScorerError):
    """A transactional producer call did not return by its deadline (librdkafka can block past its timeout)."""

    retriable = True


class ControlPublishError(ScorerError, RuntimeError):
    """A control event could not be published (broker down, topic missing, timeout)."""

    retriable = True


class ModelError(ScorerError, RuntimeError):
    """A model could not be resolved, loaded or checked; the message says which and why."""


class MlflowUnavailable(ModelError):
    """The MLflow tracking server / registry did not answer (not the schema registry: see
    ``schemas.errors.RegistryUnavailableError``)."""

    retriable = True


class ModelUnavailable(ModelError):
    """Neither the registry nor the fallback file gave a model: the scorer cannot start."""
