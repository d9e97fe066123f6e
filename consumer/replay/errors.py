"""The replay's errors. Each carries the exit status ``housing-replay`` ends with, so the CLI maps none by hand."""

from __future__ import annotations

from consumer.errors import ScorerError


class ReplayError(ScorerError):
    """The replay stopped part-way (exit 1); what was committed stays, and re-running the same command resumes."""

    exit_code = 1


class ReplayUsageError(ReplayError):
    """A bad argument (exit 2): an unparsable or inverted range, an unknown version, a missing topic."""

    exit_code = 2


class RangeError(ReplayUsageError):
    """``--from`` / ``--to`` cannot be parsed, or do not make a range on this topic."""


class ProgressConflict(ReplayUsageError):
    """The replay group holds the unfinished progress of a different replay (another version or range)."""


class ReplayUnavailable(ReplayError):
    """Kafka, MLflow or the schema registry did not answer (exit 3); re-run when they do."""

    exit_code = 3
    retriable = True
