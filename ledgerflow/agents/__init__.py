"""faust-streaming agents: decode → pure function → produce/write → commit. No business logic here."""

__all__ = ["app", "ports", "runner"]  # the worker, the agents' interfaces, its entry point
