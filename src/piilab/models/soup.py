"""LoRA adapters of one base averaged into one ("a soup"), to take the luck of one seed out.

Each module's update, B·A·scale, is averaged over the adapters. Exactly, the average is one LoRA
whose rank is the adapters' ranks summed: their A matrices stacked, their B matrices side by side,
each divided by the number of adapters (and by the change of scale). `rank` truncates every
module's averaged update to its best approximation of that rank (SVD), so a soup of three
rank-32 trainings can be stored at rank 32 again. docs/evaluation.md, "Seed soups", measured it.

    python -m piilab.models.soup OUT RUN_DIR RUN_DIR [...] [--rank K]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import give_usual_modes, replaced_whole

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PROMPT_FILES = ("prompt_format.json", "prompt_settings.json")  # how the adapters were prompted
RECORD = "soup.json"  # which adapters, at which rank: a soup has no training of its own


def _scale(config: dict) -> float:
    return config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])


def _checked_configs(folders: list[Path]) -> list[dict]:
    """The adapters' configs, where they can be averaged: one base, the same modules, plain LoRA."""
    if len(folders) < 2:
        raise PiilabError("a soup needs two adapters at least")
    configs = []
    for folder in folders:
        missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
        if missing:
            raise PiilabError(f"{folder}: not a LoRA adapter (missing {', '.join(missing)})")
        config = json.loads((folder / CONFIG).read_text())
        odd = [key for key in ("use_dora", "alpha_pattern", "rank_pattern", "modules_to_save") if config.get(key)]
        if config.get("peft_type") != "LORA" or odd:
            raise PiilabError(f"{folder / CONFIG}: only plain LoRA adapters average this way "
                              f"({', '.join(odd) or config.get('peft_type')})")
        configs.append(config)
    for folder, config in zip(folders[1:], configs[1:]):
        for key in ("base_model_name_or_path", "target_modules"):
            mine, theirs = config.get(key), configs[0].get(key)
            if _unordered(mine) != _unordered(theirs):
                raise PiilabError(f"{folder / CONFIG}: {key} {mine!r} is not {folders[0]}'s {theirs!r}")
    return configs


def _unordered(value):
    """A config value compared as PEFT means it: a module list is a set, in any order."""
    return sorted(value) if isinstance(value, list) else value


def averaged_updates(folders: list[Path]) -> tuple[dict, dict]:
    """The adapters' config and weights averaged exactly: (config at the summed rank, tensors)."""
    import torch
    from safetensors.torch import load_file

    configs = _checked_configs(folders)
    weights = [load_file(str(folder / WEIGHTS)) for folder in folders]
    for folder, tensors in zip(folders[1:], weights[1:]):
        if tensors.keys() != weights[0].keys():
            raise PiilabError(f"{folder / WEIGHTS}: other modules than {folders[0] / WEIGHTS}'s")
    rank = sum(config["r"] for config in configs)
    scale = _scale(configs[0])
    shares = [_scale(config) / scale / len(folders) for config in configs]
    tensors = {}
    for name in weights[0]:
        if ".lora_A." in name:
            tensors[name] = torch.cat([w[name].float() for w in weights], 0)
        elif ".lora_B." in name:
            tensors[name] = torch.cat([w[name].float() * share for w, share in zip(weights, shares)], 1)
        else:
            raise PiilabError(f"{folders[0] / WEIGHTS}: {name} is neither a LoRA A nor a B matrix")
    config = dict(configs[0], r=rank, lora_alpha=scale * rank, use_rslora=False)
    return config, tensors


def truncated(config: dict, tensors: dict, rank: int) -> tuple[dict, dict]:
    """Every module's update B·A cut to its best rank-`rank` approximation, as a LoRA of that rank
    and the same scale. B·A is never formed: QR of B and of Aᵀ leave an r x r core to decompose."""
    import torch

    if not 0 < rank <= config["r"]:
        raise PiilabError(f"rank {rank}: choose 1 to {config['r']} (the soup's own)")
    out = {}
    for name_a in (name for name in tensors if ".lora_A." in name):
        name_b = name_a.replace(".lora_A.", ".lora_B.")
        q_b, r_b = torch.linalg.qr(tensors[name_b].double())
        q_a, r_a = torch.linalg.qr(tensors[name_a].double().T)
        u, s, vh = torch.linalg.svd(r_b @ r_a.T)
        kept = min(rank, s.numel())  # a narrow module's update has fewer directions than `rank`
        root = s[:kept].sqrt()
        b = torch.zeros(q_b.shape[0], rank, dtype=torch.float64)
        a = torch.zeros(rank, q_a.shape[0], dtype=torch.float64)
        b[:, :kept] = (q_b @ u[:, :kept]) * root
        a[:kept] = root[:, None] * (vh[:kept] @ q_a.T)
        out[name_b], out[name_a] = b.float(), a.float()
    return dict(config, r=rank, lora_alpha=_scale(config) * rank), out


def make_soup(folders: list[str | Path], out_dir: str | Path, rank: int | None = None) -> Path:
    """Write the adapters in `folders` averaged (at `rank`, if given) as an adapter folder that
    `--adapter` loads, with the first adapter's prompt files; atomically."""
    from safetensors.torch import save_file

    folders, out_dir = [Path(f) for f in folders], Path(out_dir)
    config, tensors = averaged_updates(folders)
    if rank is not None:
        config, tensors = truncated(config, tensors, rank)
    with replaced_whole(out_dir) as scratch:
        (scratch / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(tensors, str(scratch / WEIGHTS), metadata={"format": "pt"})
        for name in PROMPT_FILES:
            if (folders[0] / name).is_file():
                shutil.copyfile(folders[0] / name, scratch / name)
        record = {"adapters": [str(f.resolve()) for f in folders], "rank": config["r"],
                  "exact": rank is None}
        (scratch / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        give_usual_modes(scratch)  # mkdtemp's 0700 and safetensors' 0600 would survive the rename
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m piilab.models.soup",
                                     description="Average LoRA adapters of one base into one.")
    parser.add_argument("out", help="the soup's adapter folder (replaced if there)")
    parser.add_argument("adapters", nargs="+", help="adapter or run folders of one base")
    parser.add_argument("--rank", type=int, default=None,
                        help="store every module's average at this rank (SVD); default: exact, "
                             "at the adapters' ranks summed")
    args = parser.parse_args(argv)
    try:
        out = make_soup(args.adapters, args.out, args.rank)
    except PiilabError as err:
        parser.exit(2, f"piilab: error: {err}\n")
    print(f"{out}: {len(args.adapters)} adapters at rank {json.loads((out / CONFIG).read_text())['r']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
