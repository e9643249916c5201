"""Training mode: a per-tenant lock as a pure event-sourced aggregate (see docs/training.md).

The package's public names are its modules' ``__all__``: each name is listed once, where it
is defined.
"""

from __future__ import annotations

from ledgerflow.training import aggregate, records
from ledgerflow.training.aggregate import *  # noqa: F403
from ledgerflow.training.records import *  # noqa: F403

__all__: list[str] = []
__all__ += aggregate.__all__
__all__ += records.__all__
