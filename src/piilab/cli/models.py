"""`piilab models list` and `piilab models info SPEC [--json]`."""

from __future__ import annotations

import json

from piilab import models
from piilab.models.shipped import SHIPPED_DEFAULT, shipped_bases


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list embedded models, inspect a model spec")
    verbs = parser.add_subparsers(dest="models_command", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="embedded models and whether they are ready")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)

    info = verbs.add_parser("info", help="architecture, layers and sizes of a model spec")
    info.add_argument("spec", help="embedded name, local folder (model or adapter) or hub id")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--trust-remote-code", action="store_true")
    info.set_defaults(func=run_info)


def run_list(args) -> int:
    rows = models.list_models()
    if args.json:
        rows += [{"name": name, "description": f"LoRA adapter of {base}, inside piilab",
                  "base": base, "shipped": True} for name, base in shipped_bases().items()]
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "converted" if row["converted"] else "installed" if row["installed"] else "missing"
        hint = "" if row["installed"] else f"  ({row['install']})"
        default = " [default]" if row["name"] == models.DEFAULT_MODEL else ""
        print(f"{row['name']:<14} {state:<10} {row['description']}{default}{hint}")
    for name, base in shipped_bases().items():
        default = " [extract's default]" if name == SHIPPED_DEFAULT else ""
        print(f"{name:<14} {'shipped':<10} LoRA adapter of {base}, inside piilab{default}")
    return 0


def run_info(args) -> int:
    info = models.model_info(args.spec, trust_remote_code=args.trust_remote_code)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        print(f"{key:<24} {value}")
    return 0
