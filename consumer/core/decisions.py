"""The reload rules as pure functions: what a reload request means and what to do with it.

What an event means:

- Duplicates: an event id already handled is ignored.
- Alias/stage events (``promoted``/``reload`` naming an alias or stage): the registry is the truth. The
  scorer resolves the alias *now* and serves what it points at. An event whose version is older than the
  loaded one while the alias still points at the loaded version is stale (a replay, or a promotion that a
  later one superseded) and is ignored. If an operator deliberately moves the alias back to an older version,
  the registry says so and the scorer follows, exactly as the registry poll would.
- Version pins (a version with no alias or stage, from the admin API or an operator): load exactly that
  version, older or not; the operator asked for it.
- Rollback: back to the version named, or to the previous handle (kept in memory, so no download). A rollback
  sticks: the registry poll will not move the scorer forward to the version it rolled back from while the
  alias still points at it; any later event, or the alias moving to another version, ends that.
- Events for an alias the scorer does not serve are ignored; the shadow alias (``SHADOW_ALIAS``, when shadow
  scoring is on) refreshes the shadow model instead of the champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consumer.core.handle import ModelHandle
from schemas.versions import version_number

ReloadKind = Literal["reload", "promoted", "rollback"]
Slot = Literal["champion", "shadow"]
Action = Literal["load", "ignore", "swap_previous", "fail"]


@dataclass(frozen=True)
class ReloadRequest:
    """One thing the worker is asked to do."""

    kind: ReloadKind = "reload"
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    event_id: str | None = None
    source: str = "api"
    """Who asked: an event's source (training, admin_api, webhook), ``poll`` or ``api``."""
    slot: Slot | None = None
    """Force the slot (``shadow`` for shadow refreshes); None: decided by ``classify``."""

    @property
    def pinned(self) -> bool:
        """An explicit version and nothing else: load exactly that version."""
        return self.version is not None and self.alias is None and self.stage is None

    def label(self) -> str:
        """One line for logs: ``promoted v7 @champion from training``."""
        what = f"v{self.version}" if self.version else ""
        via = f"@{self.alias}" if self.alias else (f"stage {self.stage}" if self.stage else "")
        return " ".join(p for p in (self.kind, what, via, f"from {self.source}") if p)


@dataclass(frozen=True)
class Decision:
    """What to do with a request, and why (the why becomes the ReloadResult detail)."""

    action: Action
    reason: str
    version: str | None = None



def classify(request: ReloadRequest, *, served_alias: str | None, served_stage: str | None,
             served_version: str | None, shadow_alias: str | None) -> Slot | None:
    """Which model a request concerns: the champion, the shadow, or neither (None: not served here).

    :param served_alias/served_stage/served_version: what this scorer is configured to serve.
    :param shadow_alias: the shadow alias when shadow scoring is on, else None.
    """
    if request.slot is not None:
        return request.slot
    if request.kind == "rollback" or request.pinned:
        return "champion"
    if request.alias is not None:
        if served_version is None and request.alias == served_alias:
            return "champion"
        if shadow_alias is not None and request.alias == shadow_alias:
            return "shadow"
        return None
    if request.stage is not None:
        if served_version is None and served_alias is None and request.stage == served_stage:
            return "champion"
        return None
    return "champion"  # a bare reload: resolve what the settings ask for


def precheck(request: ReloadRequest, *, seen: bool, loaded: ModelHandle | None) -> Decision | None:
    """Decisions that need no registry call: duplicates and versions already loaded; None: go on."""
    if seen:
        return Decision("ignore", f"duplicate event {request.event_id}")
    if (request.kind != "rollback" and request.version is not None and loaded is not None
            and loaded.source == "registry" and request.version == loaded.version):
        return Decision("ignore", f"v{request.version} is already loaded", request.version)
    return None


def decide(request: ReloadRequest, *, target: str, loaded: ModelHandle | None,
           rolled_back_from: str | None) -> Decision:
    """After resolution: load ``target`` unless it is what already serves (or a rollback holds it off)."""
    if loaded is not None and loaded.source == "registry" and target == loaded.version:
        if request.version is not None and version_number(request.version) < loaded.version_number:
            return Decision("ignore", f"stale event: it names v{request.version}, older than the loaded "
                                      f"v{loaded.version}, and the registry still points at v{loaded.version}",
                            request.version)
        return Decision("ignore", f"v{target} is already loaded", target)
    if request.source == "poll" and rolled_back_from is not None and target == rolled_back_from:
        return Decision("ignore", f"rolled back from v{target}: waiting for the alias to move on", target)
    return Decision("load", f"load v{target}", target)


def rollback_decision(request: ReloadRequest, *, loaded: ModelHandle | None,
                      previous: ModelHandle | None) -> Decision:
    """Rollback: to the named version, else to the previous handle."""
    if request.version is not None:
        if loaded is not None and loaded.version == request.version and loaded.source == "registry":
            return Decision("ignore", f"already on v{request.version}", request.version)
        if previous is not None and previous.version == request.version and previous.source == "registry":
            return Decision("swap_previous", f"roll back to v{request.version}", request.version)
        return Decision("load", f"roll back to v{request.version}", request.version)
    if previous is None:
        return Decision("fail", "nothing to roll back to: no previous version in this process")
    return Decision("swap_previous", f"roll back to v{previous.version}", previous.version)


def poll_wants_reload(resolved_version: str, current: ModelHandle | None, rolled_back_from: str | None) -> bool:
    """Should the registry poll ask for a reload? (Different version, or still on the fallback file.)"""
    if current is None or current.source != "registry":
        return True
    if resolved_version == current.version:
        return False
    return resolved_version != rolled_back_from
