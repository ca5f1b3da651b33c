"""Adapters shipped inside piilab itself: a trained run, stored small, under an embedded name.

`piilab-pii` is the adapter that `piilab extract` uses when no --model is given; its recipe is
`src/piilab/configs/pii.yaml`. A shipped folder holds only what loading and prompting need:
the PEFT config (its base is an embedded model name, never a path on the machine that trained
it), the weights as bfloat16 safetensors (half the size; answers checked on the dev set), and
the run's prompt format and prompt settings.

    python -m piilab.models.shipped RUN_DIR [NAME]   # refresh the package's copy from a run
                                                     # (NAME: piilab-pii)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import replaced_whole

SHIPPED_DIR = Path(__file__).parent / "adapters"
SHIPPED_DEFAULT = "piilab-pii"
WEIGHTS = "adapter_model.safetensors"
KEPT_FILES = ("prompt_format.json", "prompt_settings.json")


def shipped_adapters() -> dict[str, Path]:
    """Name -> folder of every adapter in the package."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {folder.name: folder for folder in sorted(SHIPPED_DIR.iterdir())
            if (folder / "adapter_config.json").is_file()}


def shipped_bases() -> dict[str, str]:
    """Name -> base model name of every shipped adapter."""
    return {name: json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
            for name, folder in shipped_adapters().items()}


def _bfloat16_weights(source: Path, target: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source))
    save_file({name: t.to(torch.bfloat16) if t.is_floating_point() else t
               for name, t in tensors.items()}, str(target), metadata={"format": "pt"})


def trained_base(run_dir: Path) -> str:
    """The embedded model a run trained on, from its train_config.json."""
    from piilab.models.embedded import EMBEDDED
    from piilab.train.config import load_run_config

    base = load_run_config(run_dir).model
    if base not in EMBEDDED:
        raise PiilabError(f"{run_dir}: trained on {base!r}; only adapters of embedded models ship")
    return base


def _portable_settings(path: Path) -> None:
    """Prompt settings name the training card they came from; keep the experiment folder's own
    part of that path ("piilab-pii/data/card.json"), not where the machine kept it."""
    settings = json.loads(path.read_text())
    source = settings.get("source")
    if isinstance(source, str) and Path(source).is_absolute():
        settings["source"] = Path(*Path(source).parts[-3:]).as_posix()
        path.write_text(json.dumps(settings, indent=2) + "\n")


def export_adapter(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write RUN_DIR's adapter as a shipped folder (bf16 weights, base by its embedded name),
    atomically."""
    from piilab.second_look import DEFAULTS_FILE

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    missing = [name for name in ("adapter_config.json", "train_config.json", WEIGHTS, *KEPT_FILES)
               if not (run_dir / name).is_file()]
    if missing:
        raise PiilabError(f"{run_dir}: not a finished adapter run (missing {', '.join(missing)})")
    base = trained_base(run_dir)
    with replaced_whole(out_dir) as scratch:
        config = json.loads((run_dir / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base
        if isinstance(config.get("target_modules"), list):  # PEFT writes a set: its order varies by run
            config["target_modules"] = sorted(config["target_modules"])
        (scratch / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _bfloat16_weights(run_dir / WEIGHTS, scratch / WEIGHTS)
        for name in KEPT_FILES:
            shutil.copyfile(run_dir / name, scratch / name)
        if (run_dir / DEFAULTS_FILE).is_file():  # extract's defaults, where the recipe chose some
            shutil.copyfile(run_dir / DEFAULTS_FILE, scratch / DEFAULTS_FILE)
        _portable_settings(scratch / "prompt_settings.json")
        for path in scratch.iterdir():  # readable by every user of an installed package
            path.chmod(0o644)
        scratch.chmod(0o755)
    return out_dir


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    name = argv[1] if len(argv) == 2 else SHIPPED_DEFAULT
    out = export_adapter(argv[0], SHIPPED_DIR / name)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"{out}: {size:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
