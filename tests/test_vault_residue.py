"""What reading a KV secret from OpenBao leaves in a process's memory, read
by the kernel (/proc/PID/mem of a child: support.procfs), over HTTP and
over TLS, against the real dev servers (support.openbao).

The child gets the secret from the server itself: the value is in neither
its argv nor its environment (the address and the token are: they are not
what is scanned for). Controls keep the scan honest: a child that loads
nothing finds 0; a child holding the value in a live locked cell finds it;
hvac, reading the same secret and dropping every reference, leaves copies.
"""

from __future__ import annotations

import pytest
from support.child import start_child
from support.openbao import OpenBao
from support.procfs import random_secret, scan_memory, secret_forms

OURS = """
from cypher_cell import Policy, load_secrets
from cypher_cell.providers import Vault
keep = sys.argv[3] == "keep"
store = load_secrets(
    Vault(sys.argv[1], ca_file=sys.argv[2] or None),  # address and token from BAO_ADDR/BAO_TOKEN
    default_policy=Policy(protection="locked") if keep else None,  # locked: a scan can see the cell
)
with store["RESIDUE"].expose() as view:
    assert len(view) > 0
if not keep:
    store.close()
    del store
gc.collect()
"""

HVAC = """
import hvac
client = hvac.Client(url=os.environ["BAO_ADDR"], token=os.environ["BAO_TOKEN"], verify=sys.argv[2] or True)
mount, _, name = sys.argv[1].partition("/")
reply = client.secrets.kv.v2.read_secret_version(path=name, mount_point=mount, raise_on_deleted_version=True)
assert reply["data"]["data"]["RESIDUE"]
del reply
client.adapter.close()
del client
gc.collect()
"""

#: Two paths, the second missing: the load fails, and the cells already
#: made from the first are wiped (all or nothing).
FAILED = """
from cypher_cell import ProviderError, load_secrets
from cypher_cell.providers import Vault
try:
    load_secrets(Vault(sys.argv[1], sys.argv[1] + "-absent", ca_file=sys.argv[2] or None))
except ProviderError as exc:
    assert "-absent" in str(exc)
else:
    raise AssertionError("the load did not fail")
gc.collect()
"""

NOTHING = """
from cypher_cell.providers import Vault
"""


@pytest.fixture(params=["http", "tls"])
def server(request: pytest.FixtureRequest) -> OpenBao:
    return request.getfixturevalue("openbao" if request.param == "http" else "openbao_tls")  # type: ignore[no-any-return]


def copies_left(server: OpenBao, code: str, *args: str) -> int:
    """Writes a fresh random value at secret/residue-N, runs `code` in a
    child that reads it from the server, and counts the value's forms in
    the child's memory after `code` ran."""
    secret = random_secret()
    name = "residue-" + secret[-8:].decode()
    server.kv_put(name, {"RESIDUE": secret.decode()})
    env = {"BAO_ADDR": server.address, "BAO_TOKEN": server.root_token}
    ca = str(server.ca_file) if server.ca_file else ""
    child = start_child(code + "\nreport(done=True)\nhold()\n", f"secret/{name}", ca, *args, env=env)
    try:
        return scan_memory(child.pid, secret_forms(secret)).copies
    finally:
        child.finish()


def test_control_a_child_that_reads_nothing_has_no_copy(server: OpenBao) -> None:
    assert copies_left(server, NOTHING) == 0


def test_control_a_live_locked_cell_is_seen(server: OpenBao) -> None:
    assert copies_left(server, OURS, "keep") >= 1


def test_control_hvac_leaves_copies(server: OpenBao) -> None:
    assert copies_left(server, HVAC) >= 1


def test_reading_through_vault_leaves_no_copy(server: OpenBao, capsys: pytest.CaptureFixture[str]) -> None:
    runs = 3
    ours = [copies_left(server, OURS, "close") for _ in range(runs)]
    theirs = [copies_left(server, HVAC) for _ in range(runs)]
    scheme = "TLS" if server.ca_file else "HTTP"
    with capsys.disabled():
        print(f"\n[vault residue, {scheme}] copies after closing/dropping: Vault {ours}, hvac {theirs}")
    assert ours == [0] * runs


def test_a_load_that_fails_on_a_later_path_leaves_no_copy(server: OpenBao) -> None:
    assert copies_left(server, FAILED) == 0
