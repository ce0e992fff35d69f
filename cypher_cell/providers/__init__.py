"""Sources of secrets for `load_secrets()`. Optional dependencies (keyring)
are imported only when a provider that needs them is used."""

from __future__ import annotations

from cypher_cell.providers.base import Loaded, PolicyFor, Provider
from cypher_cell.providers.envfile import EnvFile
from cypher_cell.providers.environ import Environ
from cypher_cell.providers.keyring import Keyring
from cypher_cell.providers.prompt import Prompt
from cypher_cell.providers.secretsdir import SecretsDir

__all__ = ["EnvFile", "Environ", "Keyring", "Loaded", "PolicyFor", "Prompt", "Provider", "SecretsDir"]
