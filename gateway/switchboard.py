"""The Switchboard lives in gateway/engine/ (a façade over its collaborators); this name stays for imports."""

from .engine.switchboard import Switchboard

__all__ = ["Switchboard"]
