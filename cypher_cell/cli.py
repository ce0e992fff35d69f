"""The `cypher-cell` command line.

Each subcommand is one `_add_*` function that registers its arguments and
sets `run`, a function from the parsed arguments to the exit status. A new
subcommand (`check FILE`, `show`) is one more `_add_*` line in `build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cypher_cell import __version__, doctor

Command = Callable[[argparse.Namespace], int]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cypher-cell",
        description="Secrets in locked, zeroizing memory.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _add_doctor(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand and returns its exit status (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
