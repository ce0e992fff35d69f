"""Failover across a real three-node OpenBao raft cluster
(support.openbao's ``openbao_cluster``: formed once per run, only when a
test here is selected).

The active node is killed (SIGKILL, as a crash); a load given all three
addresses, the dead one first, must succeed through the others within its
`timeout`: the client moves past the refused connection, and past a
standby that answers "no active node" while the election runs, to the new
active node, or a standby (OpenBao's standbys answer reads from their own
copy of the raft log: the test waits until the secret reached every node).
"""

from __future__ import annotations

import secrets
import time

import pytest
from support.openbao import Cluster

from cypher_cell import load_secrets

READER = 'path "kv/data/app" { capabilities = ["read"] }'


def test_the_active_node_dies_and_the_load_succeeds_through_the_others(
    openbao_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from cypher_cell.providers import Vault, VaultToken

    cluster = openbao_cluster
    active = cluster.active()
    value = b"c-" + secrets.token_hex(16).encode()
    active.kv_put("app", {"API_KEY": value.decode()}, mount=cluster.kv_mount)
    cluster.wait_readable(f"{cluster.kv_mount}/data/app")  # standbys read their own copy
    active.policy("cluster-reader", READER)
    token = active.token("cluster-reader")
    others = [n for n in cluster.nodes if n is not active]
    urls = [active.address, *(n.address for n in others)]

    # Control: with every node up the same load reads the value.
    with load_secrets(Vault("kv/app", url=urls, auth=VaultToken(token))) as store:
        same = store["API_KEY"] == value
        assert same, "API_KEY differs (all nodes up)"

    active.kill()
    killed = time.monotonic()
    with load_secrets(Vault("kv/app", url=urls, auth=VaultToken(token), timeout=15.0)) as store:
        failover = time.monotonic() - killed
        same = store["API_KEY"] == value
        assert same, "API_KEY differs (read after failover)"
    elected = cluster.active()  # a survivor took over
    assert elected is not active and elected.alive()
    with capsys.disabled():
        print(f"\n[vault failover] active node killed -> load via the others: {failover:.2f} s")
    assert failover < 15.0
