"""The provider contract: two methods, as small as keyring's backend.

A provider names the keys it can offer (`offered_keys`) and fills cells for
the keys it is asked for (`load`). It never returns a value as a Python
object: values go from the source into cells, ideally read by Rust straight
into locked memory. Errors name the key, the provider and the place, never
a value.

`Entry` (a cell and its origin) is native: an `.env` file of 100,000 keys
makes 100,000 of them in one call, kept off the cycle collector.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import ClassVar

from cypher_cell._native import Entry, wipe_entries
from cypher_cell.policy import Policy

#: Gives the policy for a key; providers pass it on when creating each cell.
PolicyFor = Callable[[str], Policy]

#: The name `Entry` had before 0.2; kept for one release (see CHANGELOG.md).
Loaded = Entry

__all__ = ["Entry", "Loaded", "PolicyFor", "Provider", "is_interactive", "wiped_on_error"]


def is_interactive(provider: Provider) -> bool:
    """Whether `provider` asks a person, by its `interactive` property or
    the 0.1 name `asks_only_required` (either may be overridden)."""
    return provider.interactive or provider.asks_only_required


@contextmanager
def wiped_on_error(loaded: Mapping[str, Entry]) -> Iterator[None]:
    """Wipes every cell in `loaded` if the block raises anything, Ctrl-C
    included: a provider that fails hands back nothing half-loaded."""
    try:
        yield
    except BaseException:
        wipe_entries(loaded.values())
        raise


class Provider(abc.ABC):
    """A source of secrets for `load_secrets()`."""

    #: Short name used in origins and errors: "env-file", "environ", ...
    kind: ClassVar[str]

    @property
    def interactive(self) -> bool:
        """True for a source that asks a person (`Prompt()` without keys):
        `load_secrets` asks it only for *required* keys."""
        return False

    @property
    def asks_only_required(self) -> bool:
        """The name `interactive` had before 0.2; kept for one release (see
        CHANGELOG.md). `load_secrets` honours an override of either."""
        return self.interactive

    @abc.abstractmethod
    def offered_keys(self) -> Collection[str] | None:
        """The keys this source can list without reading their values, or
        None when it cannot enumerate (it is then asked for the keys that
        `load_secrets` wants and still lacks)."""

    @abc.abstractmethod
    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        """Cells for those of `keys` this source has, in a new dict that the
        caller takes over; absent keys are simply left out. Each cell is
        created with ``policy(key)``. Raises
        `ProviderError` (naming provider, key and place) when the source
        exists but cannot be read, after wiping any cell it already made."""

    def commit(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Called once `load_secrets` has every key it needs and every
        source is closed, before the store is returned; not called when
        loading or closing fails. A source that changes the world after
        reading (Environ scrubs the variables it read) does it here, so a
        failed load leaves everything as it was. The load has succeeded by
        now: an exception raised here becomes a `RuntimeWarning`."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Releases (and wipes) anything the source still holds, such as a
        parsed file's buffer. `load_secrets` calls it for every source when
        it is done loading, whether or not the source was asked for
        anything, and before any `commit`: one that raises fails the load."""

    @property
    def refreshable(self) -> bool:
        """Whether `SecretStore.refresh()` may read this source's keys again
        (False for a source that cannot give them twice: a prompt, or the
        environment once scrubbed). Their cells are then kept as they are."""
        return True

    def release(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Called once when the store this source loaded into closes (after
        its cells are wiped), or when the load fails: ends what the source
        keeps going for the store's life (Vault: lease renewal, its login
        token). Problems become warnings; it should not raise."""

    def describe(self) -> str:
        """A one-line name for messages, such as ``env-file .env``."""
        return self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
