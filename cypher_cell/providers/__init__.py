"""Sources of secrets for `load_secrets()`. Optional dependencies (keyring)
are imported only when a provider that needs them is used."""

from __future__ import annotations

from cypher_cell.providers.base import Loaded, PolicyFor, Provider

__all__ = ["Loaded", "PolicyFor", "Provider"]
