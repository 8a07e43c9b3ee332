"""What the daemon hands every section when it assembles them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .http.auth import TokenStore
from .http.catalogue import Catalogue
from .http.traffic import Traffic
from .jobs.runner import JobRunner
from .layout import AdminTree
from .tls import ContextFactory


@dataclass(frozen=True)
class Context:
    tree: AdminTree
    config: Config
    tokens: TokenStore
    runner: JobRunner
    catalogue: Catalogue  # read only after every section is added (GET /endpoints)
    reactor: Any
    clock: Any
    tls: ContextFactory  # the certificate the HTTPS listener serves; load() swaps it
    # Called (with no argument) after every request that authenticated: a section that
    # waits for the administrator to show up (a network change to confirm) adds to it.
    authenticated: list[Callable[[], None]] = field(default_factory=list)
    # What a one-time download link (POST /downloads) may fetch: a name ("backup", "logs",
    # "debug") and the handler of the GET that gives it, added by the section serving it.
    downloads: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)  # the daemon's answers, for GET /metrics
