"""Benchmark the Vault provider against hvac, in one run, on one OpenBao.

Run from the repository root with the test extra installed (it starts the
real servers with the tests' own fixtures' code: tests/support/openbao.py
and, for the leases, tests/support/postgres.py, which needs Debian's
postgresql; `make bench` installs both)::

    python bench/bench_vault.py            # 300 paths, 1,000 leases
    python bench/bench_vault.py --quick    # smoke run: 30 paths, 50 leases, few rounds
    python bench/bench_vault.py --check    # exit 1 when the 5x target FAILs

What is timed (medians; the server is an OpenBao dev server over HTTP on
loopback, on the same CPUs as the client):

1. 300 KV v2 paths (one field each): ``load_secrets(Vault(*paths))`` then
   ``store.close()``, beside hvac reading the same paths one by one
   (``Client(url, token)`` and ``kv.v2.read_secret_version`` per path, as
   an application would), and beside raw ``http.client`` keep-alive GETs
   of the same paths (the floor of one-by-one reading from Python).
   Rounds alternate between the contenders. Target (issue 11): >= 5x hvac.
2. First call of one path, in a fresh process (timed inside it after its
   imports): an application's start-up. Ours, and hvac's.
3. The renewal thread with 1,000 live renewable leases (PostgreSQL users
   from the database secrets engine, TTL 10 s, so each is renewed every
   few seconds): the process's CPU time over a window beyond an idle
   process's, and how much slower a pure-Python loop on the main thread
   runs meanwhile (the GIL's share).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.openbao import OpenBao, start_dev_server  # noqa: E402

from cypher_cell import CellWipedError, SecretStore, __version__, load_secrets  # noqa: E402

#: Recorded earlier on this machine (printed for reference; comparisons use this run's figures).
ANCHORS = [
    ("one KV v2 read on loopback", "hvac 2.4 / raw http.client keep-alive", "~1.5 ms / ~0.5 ms"),
]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


# --- 1. many paths --------------------------------------------------------------


def write_paths(server: OpenBao, count: int) -> list[str]:
    paths = []
    for i in range(count):
        server.api("POST", f"secret/data/bench/p{i:03d}", {"data": {f"K{i:03d}": os.urandom(16).hex()}})
        paths.append(f"secret/bench/p{i:03d}")
    return paths


def ours(server: OpenBao, paths: list[str]) -> Callable[[], None]:
    from cypher_cell.providers import Vault, VaultToken

    def run() -> None:
        store = load_secrets(Vault(*paths, url=server.address, auth=VaultToken(server.root_token)))
        assert len(store) == len(paths)
        store.close()

    return run


def hvac_one_by_one(server: OpenBao, paths: list[str]) -> Callable[[], None]:
    import hvac

    def run() -> None:
        client = hvac.Client(url=server.address, token=server.root_token)
        kv = client.secrets.kv.v2
        for p in paths:
            mount, _, name = p.partition("/")
            kv.read_secret_version(path=name, mount_point=mount, raise_on_deleted_version=True)
        client.adapter.close()

    return run


def raw_keep_alive(server: OpenBao, paths: list[str]) -> Callable[[], None]:
    host, _, port = server.address.removeprefix("http://").partition(":")

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port))
        for p in paths:
            mount, _, name = p.partition("/")
            conn.request("GET", f"/v1/{mount}/data/{name}", headers={"X-Vault-Token": server.root_token})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()

    return run


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the kernel accounts to process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved(
    contenders: dict[str, Callable[[], None]], rounds: int, server_pid: int
) -> dict[str, dict[str, float]]:
    """Median wall time of each contender, and the median CPU time it cost
    this process and the server (the server's share bounds any client: it
    runs on the same CPUs)."""
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()  # warm-up: imports, the server's caches
    for _ in range(rounds):
        for name, fn in contenders.items():
            server = process_cpu(server_pid)
            client = time.process_time()
            t = time.perf_counter()
            fn()
            wall = time.perf_counter() - t
            samples[name].append((wall, time.process_time() - client, process_cpu(server_pid) - server))
    return {
        name: {
            "wall_ms": median_ms([x[0] for x in s]),
            "client_cpu_ms": median_ms([x[1] for x in s]),
            "server_cpu_ms": median_ms([x[2] for x in s]),
        }
        for name, s in samples.items()
    }


# --- 2. first call in a fresh process --------------------------------------------

FIRST_OURS = """
import sys, time
from cypher_cell import load_secrets
from cypher_cell.providers import Vault, VaultToken
t = time.perf_counter()
store = load_secrets(Vault(sys.argv[1], url=sys.argv[2], auth=VaultToken(sys.argv[3])))
elapsed = time.perf_counter() - t
store.close()
print(elapsed)
"""

FIRST_HVAC = """
import sys, time
import hvac
t = time.perf_counter()
client = hvac.Client(url=sys.argv[2], token=sys.argv[3])
mount, _, name = sys.argv[1].partition("/")
client.secrets.kv.v2.read_secret_version(path=name, mount_point=mount, raise_on_deleted_version=True)
print(time.perf_counter() - t)
"""


def first_call(code: str, server: OpenBao, path: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code, path, server.address, server.root_token],
            check=True,
            capture_output=True,
            text=True,
        )
        samples.append(float(out.stdout.split()[-1]))
    return median_ms(samples)


# --- 3. the renewal thread -----------------------------------------------------------

BUSY_OPS = 200_000


def busy_loop_seconds() -> float:
    t = time.perf_counter()
    x = 0
    for i in range(BUSY_OPS):
        x += i * i % 7
    return time.perf_counter() - t


def window(seconds: float) -> tuple[float, float]:
    """CPU seconds this process used over `seconds` with the main thread
    asleep (what background threads cost), then the median time of short
    pure-Python loops run on the main thread for `seconds` (the GIL's share)."""
    cpu = time.process_time()
    time.sleep(seconds)
    used = time.process_time() - cpu
    end = time.monotonic() + seconds
    loops = []
    while time.monotonic() < end:
        loops.append(busy_loop_seconds())
        time.sleep(0.01)
    return used, statistics.median(loops)


def readable(store: SecretStore) -> bool:
    """Whether every cell of `store` can still be read (none expired)."""
    try:
        for key in store:
            with store[key].expose():
                pass
    except CellWipedError:
        return False
    return True


def renewals(server: OpenBao) -> dict[str, object]:
    """Each live bench lease's last renewal time, as the server records it."""
    return {i: server.lease(i).get("last_renewal") for i in server.leases("database/creds/bench/")}


def renewal_cost(server: OpenBao, leases: int, seconds: float) -> dict[str, Any]:
    from support.postgres import start_postgres

    from cypher_cell.providers import Vault, VaultToken

    pg = start_postgres(Path(tempfile.mkdtemp(prefix="cc-bench-postgres-")))
    stores = []
    try:
        server.enable_secrets("database", "database")
        server.api(
            "POST",
            "database/config/pg",
            {
                "plugin_name": "postgresql-database-plugin",
                "connection_url": pg.connection_url(),
                "username": pg.superuser,
                "password": pg.password,
                "allowed_roles": "*",
                "max_open_connections": 8,
            },
        )
        server.api(
            "POST",
            "database/roles/bench",
            {
                "db_name": "pg",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"],
                "default_ttl": 10,
                "max_ttl": 3600,
            },
        )
        idle_cpu, idle_loop = window(seconds)
        t = time.perf_counter()
        for _ in range(leases):
            stores.append(
                load_secrets(
                    Vault("database/creds/bench", url=server.address, auth=VaultToken(server.root_token))
                )
            )
        made = time.perf_counter() - t
        before = renewals(server)
        busy_cpu, busy_loop = window(seconds)
        after = renewals(server)
        renewed = sum(1 for lease_id, last in after.items() if last and last != before.get(lease_id))
        expired = sum(1 for store in stores if not readable(store))
        return {
            "leases": leases,
            "made_s": made,
            "window_s": seconds,
            "cpu_idle_s": idle_cpu,
            "cpu_with_leases_s": busy_cpu,
            "renewal_cpu_share": (busy_cpu - idle_cpu) / seconds,
            "loop_slowdown": busy_loop / idle_loop,
            "leases_renewed": renewed,
            "stores_expired": expired,
        }
    finally:
        for store in stores:
            store.close()
        server.api("PUT", "sys/leases/revoke-prefix/database/creds/bench", check=False)
        pg.stop()


# --- report -----------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 30 paths, 50 leases, few rounds")
    ap.add_argument("--check", action="store_true", help="exit 1 when the 5x target FAILs")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    ap.add_argument("--no-leases", action="store_true", help="skip the renewal figure (needs PostgreSQL)")
    args = ap.parse_args()
    n_paths, rounds, first_runs = (30, 3, 3) if args.quick else (300, 15, 11)
    n_leases, seconds = (50, 2.0) if args.quick else (1000, 15.0)

    root = Path(tempfile.mkdtemp(prefix="cc-bench-vault-"))
    server = start_dev_server(root)
    figures: dict[str, Any] = {"cypher_cell": __version__, "python": platform.python_version()}
    try:
        import hvac

        figures["hvac"] = hvac.__version__ if hasattr(hvac, "__version__") else "?"
        version = server.bao("version").stdout.strip()
        print(f"bench_vault: cypher_cell {__version__}, {version}, CPython {platform.python_version()}")
        paths = write_paths(server, n_paths)
        many = interleaved(
            {
                "ours": ours(server, paths),
                "hvac": hvac_one_by_one(server, paths),
                "http.client": raw_keep_alive(server, paths),
            },
            rounds,
            server.proc.pid,
        )
        figures["paths"] = {"count": n_paths, "rounds": rounds, **many}
        ratio = many["hvac"]["wall_ms"] / many["ours"]["wall_ms"]
        print(f"\n1. {n_paths} KV v2 paths, median of {rounds} interleaved rounds (wall; CPU client/server)")
        for name, label in (
            ("ours", "load_secrets(Vault(*paths))"),
            ("hvac", "hvac, one by one"),
            ("http.client", "http.client keep-alive, one by one"),
        ):
            m = many[name]
            print(
                f"   {label:36} {m['wall_ms']:8.1f} ms  {m['wall_ms'] / many['ours']['wall_ms']:5.1f}x   "
                f"(client {m['client_cpu_ms']:.0f} ms, server {m['server_cpu_ms']:.0f} ms)"
            )
        print(f"   load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        first = {
            "ours": first_call(FIRST_OURS, server, paths[0], first_runs),
            "hvac": first_call(FIRST_HVAC, server, paths[0], first_runs),
        }
        figures["first_call_ms"] = first
        print(f"\n2. first call of one path in a fresh process (after imports), median of {first_runs}")
        print(f"   ours {first['ours']:.2f} ms, hvac {first['hvac']:.2f} ms")

        if not args.no_leases:
            cost = renewal_cost(server, n_leases, seconds)
            figures["renewal"] = cost
            print(f"\n3. renewal with {cost['leases']} live leases (TTL 10 s), over 2 x {seconds:.0f} s")
            print(f"   {cost['leases']} loads (one lease each) took {cost['made_s']:.1f} s")
            print(
                f"   CPU, main thread asleep: {cost['renewal_cpu_share'] * 100:.2f}% of one core beyond idle "
                f"({cost['cpu_with_leases_s']:.3f} s vs {cost['cpu_idle_s']:.3f} s with no lease)"
            )
            print(f"   main-thread Python loop: {cost['loop_slowdown']:.2f}x its idle time")
            renewed = f"{cost['leases_renewed']} of {cost['leases']}"
            print(f"   leases renewed within the window (the server's record): {renewed}")
            print(f"   stores with an expired cell at the end: {cost['stores_expired']} of {cost['leases']}")

        print("\nAnchors recorded earlier on this machine (reference only):")
        for what, anchor, figure in ANCHORS:
            print(f"   {what}: {anchor}: {figure}")
        met = ratio >= 5.0
        figures["target_5x_hvac"] = {"ratio": ratio, "met": met}
        print(f"\nTarget >= 5x hvac for {n_paths} paths: {'met' if met else 'FAIL'} ({ratio:.1f}x)")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 1 if args.check and not met else 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
