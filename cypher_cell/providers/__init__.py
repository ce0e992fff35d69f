"""Sources of secrets for `load_secrets()`. Each provider's module is
imported when the provider is first used (``from cypher_cell.providers
import EnvFile``), and optional dependencies (keyring) only when a provider
that needs them loads: ``import cypher_cell`` stays cheap."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from cypher_cell.providers.base import Entry, Loaded, PolicyFor, Provider

if TYPE_CHECKING:
    from cypher_cell.providers.envfile import EnvFile
    from cypher_cell.providers.environ import Environ
    from cypher_cell.providers.keyring import Keyring
    from cypher_cell.providers.prompt import Prompt
    from cypher_cell.providers.secretsdir import SecretsDir
    from cypher_cell.providers.vault import Vault, VaultAppRole, VaultJWT, VaultToken

__all__ = [
    "Entry",
    "EnvFile",
    "Environ",
    "Keyring",
    "Loaded",
    "PolicyFor",
    "Prompt",
    "Provider",
    "SecretsDir",
    "Vault",
    "VaultAppRole",
    "VaultJWT",
    "VaultToken",
]

_MODULES = {
    "EnvFile": "envfile",
    "Environ": "environ",
    "Keyring": "keyring",
    "Prompt": "prompt",
    "SecretsDir": "secretsdir",
    "Vault": "vault",
    "VaultAppRole": "vault",
    "VaultJWT": "vault",
    "VaultToken": "vault",
}


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
