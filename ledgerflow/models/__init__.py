"""The model registry: per tenant, providers and models with their settings, as a pure
event-sourced aggregate (see docs/models.md). Pure: no I/O, no clock."""

from __future__ import annotations

from ledgerflow.models import aggregate, records
from ledgerflow.models.aggregate import *  # noqa: F403
from ledgerflow.models.records import *  # noqa: F403

# The package's public names are its modules' ``__all__``: each listed once, where it is defined.
__all__: list[str] = []
__all__ += aggregate.__all__
__all__ += records.__all__
