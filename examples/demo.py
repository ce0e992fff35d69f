"""The main job of `make run`: load the shipped example secrets into a
store and show what was loaded, from where, under which policy and with
which protection — values redacted.

    python examples/demo.py
"""

from __future__ import annotations

import os
from pathlib import Path

from cypher_cell import Policy, load_secrets
from cypher_cell.cli import render_store
from cypher_cell.providers import EnvFile, Environ, SecretsDir

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("DEMO_SESSION_KEY", "demo-session-key-from-the-environment")
    store = load_secrets(
        # A shipped example is world-readable; a real .env should be 0600.
        EnvFile(HERE / ".env", permissions="ignore"),
        SecretsDir(HERE / "secrets"),
        Environ(prefix="DEMO_"),
        required=["DB_PASSWORD", "API_TOKEN", "stripe_key"],
        policy={
            "DB_PASSWORD": Policy(ttl_sec=300),
            "OTP_*": Policy(volatile=True),
            "*_KEY": Policy(ttl_sec=60),
        },
    )
    with store:
        print(render_store(store))
        scrubbed = "DEMO_SESSION_KEY" not in os.environ
        print(f"\n{len(store)} secrets loaded; DEMO_SESSION_KEY scrubbed from the environment: {scrubbed}")
    print(f"store closed, every cell wiped: {all(c.wiped for c in store.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
