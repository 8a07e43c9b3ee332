"""What the daemon hands every section when it assembles them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .auth import TokenStore
from .catalogue import Catalogue
from .config import Config
from .layout import AdminTree
from .runner import JobRunner


@dataclass(frozen=True)
class Context:
    tree: AdminTree
    config: Config
    tokens: TokenStore
    runner: JobRunner
    catalogue: Catalogue  # read only after every section is added (GET /endpoints)
    reactor: Any
    clock: Any
