"""Redis read models projected from the logs: pure ``project`` functions plus one fenced writer."""

__all__ = ["conversations", "keys", "rebuild", "verify", "views", "writer"]
