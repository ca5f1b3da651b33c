"""The `piilab` command line: parses arguments and calls the library, nothing more.

Every module in this package (except those starting with `_`) is one verb: it defines
`register(subparsers)`, which adds its parser and sets `func(args) -> int | None`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from piilab import __version__
from piilab.errors import PiilabError

log = logging.getLogger("piilab")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="piilab", description="PII instruction tuning and layer-wise evaluation."
    )
    parser.add_argument("--version", action="version", version=f"piilab {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (raw PII records are only ever logged at DEBUG)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # Third-party libraries are chatty at INFO; keep piilab's own messages readable.
    for name in ("transformers", "datasets", "accelerate", "peft", "trl", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.log_level)
    try:
        if "threads" in args:  # the verbs that compute
            from piilab.runtime import configure_threads

            configure_threads(args.threads)
        return int(args.func(args) or 0)
    except PiilabError as err:
        print(f"piilab: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a file that cannot be read or written: the system's own words
        where = f"{err.filename}: " if err.filename else ""
        print(f"piilab: error: {where}{err.strerror or err}", file=sys.stderr)
        return PiilabError.exit_code
    except KeyboardInterrupt:
        print("piilab: interrupted", file=sys.stderr)
        return 130
