"""Where one service of the local stack keeps its state and where it listens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ServiceNode:
    """A service's files live in ``state_dir / SERVICE`` (its log: ``SERVICE.log`` there)."""

    SERVICE: ClassVar[str]
    state_dir: Path
    host: str
    port: int

    @property
    def dir(self) -> Path:
        return self.state_dir / self.SERVICE

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.SERVICE}.log"
