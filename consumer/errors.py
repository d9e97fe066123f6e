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

    reason = "load_failed"
    """The reload failure's reason code (metric label, /health, status detail): ``load_failed``,
    ``check_failed``, ``signature_mismatch``, ``flavour_library_missing``, ``registry_unavailable``."""


class MlflowUnavailable(ModelError):
    """The MLflow tracking server / registry did not answer (not the schema registry: see
    ``schemas.errors.RegistryUnavailableError``)."""

    retriable = True
    reason = "registry_unavailable"


class ModelCheckFailed(ModelError):
    """The model failed its check prediction (raised, or predicted non-finite values)."""

    reason = "check_failed"


class SignatureRefused(ModelError):
    """The version's signature (or, without one, its predictions) does not fit the housing record."""

    reason = "signature_mismatch"


class FlavourLibraryMissing(ModelError):
    """The version's flavour needs a Python package this environment does not have (nothing is installed at run
    time: the message names the package to install)."""

    reason = "flavour_library_missing"

    def __init__(self, message: str, package: str) -> None:
        super().__init__(message)
        self.package = package


class ModelUnavailable(ModelError):
    """Neither the registry nor the fallback file gave a model: the scorer cannot start."""
