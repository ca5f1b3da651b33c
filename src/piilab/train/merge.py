"""`piilab merge`: fold a run's LoRA adapter into its base model, as a plain model folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import give_usual_modes, output_folder, replaced_whole, write_json

log = logging.getLogger(__name__)


def merge(run_dir: str | os.PathLike, out: str | os.PathLike, *, device: str = "auto",
          dtype: str = "auto") -> Path:
    """Fold a run's LoRA adapter into its base model and save a plain model folder.

    The result (safetensors + tokenizer + prompt_format.json + prompt_settings.json +
    merge_config.json, and extract_defaults.json where the run has one) loads like any model,
    with no PEFT. It is written to a temporary folder and renamed into place.
    """
    run_dir, out = Path(run_dir), Path(out)
    _check_adapter_folder(run_dir)
    # Checked before the model loads: a bad --out would waste the load and the merge.
    with output_folder(out, "--out"):
        if any(out.iterdir()):
            raise PiilabError(f"{out}: --out already holds files; choose another folder")
        return _merge(run_dir, out, device, dtype)


def _merge(run_dir: Path, out: Path, device: str, dtype: str) -> Path:
    """`merge` once the folders are checked: out is an empty folder."""
    from piilab import models
    from piilab.pii_prompt import prompt_settings, save_settings
    from piilab.models.prompts import FILENAME as FORMAT_FILE
    from piilab.second_look import DEFAULTS_FILE

    model, tokenizer = models.load_model(str(run_dir), device=device, dtype=dtype)
    merged = model.merge_and_unload()
    with replaced_whole(out) as scratch:  # out: the empty folder output_folder made or found
        merged.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        for name in (FORMAT_FILE, DEFAULTS_FILE):  # how to prompt it; what extract defaults to
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, scratch / name)
        save_settings(prompt_settings(run_dir), scratch)  # also for a run folder of an older piilab
        write_json(scratch / "merge_config.json", {
            "adapter": str(run_dir.resolve()),
            "base": json.loads((run_dir / "adapter_config.json").read_text())["base_model_name_or_path"],
            "dtype": str(next(merged.parameters()).dtype).removeprefix("torch."),
        })
        give_usual_modes(scratch)  # mkdtemp's 0700 and safetensors' 0600 would survive the rename
    log.info("merged %s into %s", run_dir, out)
    return out


def _check_adapter_folder(run_dir: Path) -> None:
    """Refuse a folder that holds no adapter to merge, saying what it is instead."""
    if (run_dir / "adapter_config.json").exists():
        return
    if (run_dir / "config.json").exists():
        raise PiilabError(f"{run_dir}: already a plain model folder (a --full-finetune run); "
                          "use it as --model, there is nothing to merge")
    raise PiilabError(f"{run_dir}: not an adapter folder (no adapter_config.json)")
