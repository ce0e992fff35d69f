"""The `cypher-cell` command line.

Each subcommand is one `_add_*` function that registers its arguments and
sets `run`, a function from the parsed arguments to the exit status. A new
subcommand (`check FILE`, `show`) is one more `_add_*` line in `build_parser`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence

from cypher_cell import __version__, doctor
from cypher_cell._native import DotenvFile
from cypher_cell.errors import CypherCellError
from cypher_cell.loader import load_secrets
from cypher_cell.providers import EnvFile, Environ, Provider, SecretsDir, Vault
from cypher_cell.providers.envfile import NOT_A_KEY, NUL, loose_permissions
from cypher_cell.run import FORWARDED, RunError, run_command
from cypher_cell.store import SecretStore

Command = Callable[[argparse.Namespace], int]

#: `run`'s forwarded signals that have no Python handler (SIGINT has one:
#: left unblocked, Ctrl-C still interrupts a load that hangs).
HELD_WHILE_LOADING = tuple(sig for sig in FORWARDED if sig != signal.SIGINT)


def _run_doctor(args: argparse.Namespace) -> int:
    report = doctor.collect()
    print(doctor.render_json(report) if args.json else doctor.render_text(report))
    return doctor.exit_status(report)


def _add_doctor(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "doctor",
        help="report what this machine offers for keeping secrets",
        description="Probe the memory tiers and the kernel settings that matter for secrets. "
        'Exit status 0 when protection="auto" gets locked memory, 1 when it would fall back '
        "to unlocked memory.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(run=_run_doctor)


def check_env_file(path: str) -> tuple[list[dict[str, object]], list[str]]:
    """The keys a .env file defines (name, line, whether it has a value) and
    its problems, each as ``file:line: what``. Never reads a value out, nor
    the text of a line that is not a key `EnvFile` would load (a line
    without '=', or that may belong to an unquoted multi-line value): that
    line is listed with the name None, and never becomes a Python str."""
    with DotenvFile(path) as env:
        outline = env.outline()
        # A line that is not a key is listed by line only, like a bare line.
        keys: list[dict[str, object]] = [
            {"key": name, "line": line, "has_value": name is not None} for name, line, _ in outline
        ]
        problems = [f"{path}:{line}: {what}" for line, what in env.problems()]
        hidden = [line for name, line, valued in outline if valued and name is None]
        problems += [f"{path}:{line}: {NOT_A_KEY}" for line in hidden]
        if env.nul_line is not None:
            problems.append(f"{path}:{env.nul_line}: {NUL}")
        for key, lines in env.duplicates():
            earlier = ", ".join(str(n) for n in lines[:-1])
            problems.append(
                f"{path}:{lines[-1]}: {key} is defined again (also line {earlier}); the last wins"
            )
        for key, line, ref in env.undefined_references():
            what = (
                "an undefined ${...} (not shown: it is part of a longer value, which may be a secret)"
                if ref is None
                else f"${{{ref}}}, defined neither in the file nor the environment"
            )
            problems.append(f"{path}:{line}: {key} refers to {what}")
        loose = loose_permissions(env.mode)
    if loose is not None:
        problems.append(f"{path}: {loose}")
    problems.sort(key=_line_of)
    return keys, problems


def _line_of(problem: str) -> int:
    parts = problem.split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _run_check(args: argparse.Namespace) -> int:
    try:
        keys, problems = check_env_file(args.file)
    except (CypherCellError, ValueError, OSError) as exc:
        print(f"cypher-cell check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps({"file": args.file, "keys": keys, "problems": problems, "ok": not problems}, indent=2)
        )
        return 1 if problems else 0
    named = [k for k in keys if k["key"] is not None]
    bare = [k for k in keys if k["key"] is None]
    print(f"{args.file}: {len(named)} keys")
    width = max((len(str(k["key"])) for k in named), default=3)
    for k in named:
        print(f"  line {k['line']:>4}  {str(k['key']).ljust(width)}".rstrip())
    for k in bare:
        # A line without '=', or a key that is not a name, is often a line of
        # an unquoted multi-line value (a PEM key, say): its text is not shown.
        print(f"  line {k['line']:>4}  (not a KEY=value line, not shown; quote multi-line values)")
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''}:")
        for p in problems:
            print(f"  {p}")
        return 1
    print("no problems")
    return 0


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check",
        help="validate a .env file and list its keys (never values)",
        description="Report syntax errors with line numbers, duplicate keys, references to undefined "
        "variables and loose file permissions, and list the keys the file defines. "
        "Exit status 1 when there is a problem.",
    )
    parser.add_argument("file", nargs="?", default=".env", help="the .env file (default: .env)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(run=_run_check)


def render_store(store: SecretStore) -> str:
    """A table of a store's keys, sources, policies and protection; every
    value shows as ``[REDACTED]``."""
    head = ("key", "source", "policy", "protection", "value")
    rows = [head] + [
        (key, store.source(key), store.policy(key).describe(), cell.protection, str(cell))
        for key, cell in store.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _sources(args: argparse.Namespace) -> list[Provider]:
    """The providers `show` and `run` load from, in the order given."""
    sources: list[Provider] = [EnvFile(f) for f in args.env_file]
    sources += [Environ(prefix=p) for p in args.environ_prefix]
    sources += [SecretsDir(d) for d in args.secrets_dir]
    if args.vault:  # one provider: with several paths the first that has a field wins
        sources.append(Vault(*args.vault))
    return sources or [EnvFile(".env")]


def _add_sources(parser: argparse.ArgumentParser) -> None:
    """The source options `show` and `run` share."""
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE", help="a .env file")
    parser.add_argument(
        "--environ-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="environment variables with this prefix (scrubbed once loaded)",
    )
    parser.add_argument(
        "--secrets-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of one file per secret (Docker, Kubernetes, systemd)",
    )
    parser.add_argument(
        "--vault",
        action="append",
        default=[],
        metavar="PATH",
        help="an OpenBao/Vault secret such as secret/app (address and token from BAO_ADDR/VAULT_ADDR, "
        "BAO_TOKEN/VAULT_TOKEN or ~/.vault-token)",
    )
    parser.add_argument(
        "--required", action="append", default=[], metavar="KEY", help="a key that must be found"
    )


def _run_show(args: argparse.Namespace) -> int:
    try:
        with load_secrets(*_sources(args), required=args.required) as store:
            print(render_store(store))
    except CypherCellError as exc:
        print(f"cypher-cell show: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_show(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "show",
        help="load secrets and show keys, sources and protection (values redacted)",
        description="Load secrets from the sources given (default: ./.env) into a store, print each "
        "key with its source, policy and achieved protection, then wipe them all.",
    )
    _add_sources(parser)
    parser.set_defaults(run=_run_show)


def _run_run(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print(
            "cypher-cell run: no command given (cypher-cell run [options] -- CMD [ARGS...])", file=sys.stderr
        )
        return 2
    # Blocked before any source starts a thread (the Vault lease renewer), so
    # that every thread inherits the block: a signal with no Python handler
    # that the kernel handed to such a thread would end run at once (the
    # child orphaned, a terminal left raw) instead of being forwarded. One
    # that comes while loading ends run before the command starts, with the
    # store closed (its default action, once the block is lifted below).
    # With --vault, SIGINT too: the renewer lives as long as the child, and a
    # SIGINT it took would reach Python's handler only once run's main thread
    # wakes, ending run as interrupted with the child left running. A Vault
    # load is bounded by its timeout; a Ctrl-C meanwhile ends run when it is
    # done, before the command starts.
    holding = FORWARDED if args.vault else HELD_WHILE_LOADING
    held = signal.pthread_sigmask(signal.SIG_BLOCK, holding)
    try:
        with load_secrets(*_sources(args), required=args.required) as store:
            if signal.sigpending() & (set(holding) - {signal.SIGWINCH}):
                return 1
            return run_command(command, store, mask=not args.no_mask)
    except RunError as exc:
        print(f"cypher-cell run: {exc}", file=sys.stderr)
        return exc.status
    except (CypherCellError, ValueError) as exc:
        print(f"cypher-cell run: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run a command with the secrets in its environment, its output masked",
        description="Load secrets as `show` does (default: ./.env), run CMD with them added to its "
        "environment (a secret overrides an inherited variable of the same name), and mask every "
        "loaded value in its stdout and stderr. When stdout is a terminal the command gets a "
        "terminal of its own. Exit status: the command's, 128+N when signal N ended it.",
    )
    _add_sources(parser)
    parser.add_argument("--no-mask", action="store_true", help="pass the command's output through untouched")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    parser.set_defaults(run=_run_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cypher-cell",
        description="Secrets in locked, zeroizing memory.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _add_doctor(commands)
    _add_check(commands)
    _add_show(commands)
    _add_run(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand and returns its exit status (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:  # Ctrl-C, during a FIFO's read say: no traceback
        print(f"cypher-cell {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cypher-cell show | head -1`): stop quietly.
        # Python's own flush of stdout at exit would fail again and print a
        # traceback, so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":
    sys.exit(main())
