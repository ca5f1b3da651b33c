#!/bin/bash
# benchmarks/gpu.py on a CUDA test machine, as one prepared script of at most ~10 minutes.
# Run from the repository root. Expects the wheels the machine lacks in .whl/ (trl, datasets,
# dill, multiprocess, transformers, tokenizers, bitsandbytes, peft, msgspec, ...: see
# ../shared/gpu.md) and optionally SmolLM2's tokenizer files in .dev/smollm2-tokenizer/ (else
# gpu.py trains a small tokenizer; the models keep SmolLM2's vocabulary size either way), and,
# for the extract part, SmolLM2's GGUF in the parts `gpu_prepare.sh extract` cut into .gguf/.
# Usage: bash benchmarks/gpu_run.sh [PARTS] (default decode,train,qlora,eval,profile; extract
# only by name). Each part has its own timeout; logs, gpu.json and the table land in $OUT
# (default ./gpu-out).
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"; S=$(date +%s); set -- "${1:-decode,train,qlora,eval,profile}"
el() { echo "=== [$(( $(date +%s) - S ))s] $*"; }
el env; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
python3 -c "import torch,transformers,peft,trl,bitsandbytes;print('torch',torch.__version__,'tf',transformers.__version__,'peft',peft.__version__,'trl',trl.__version__,'bnb',bitsandbytes.__version__)" || exit 1
TOK=(); [ -f .dev/smollm2-tokenizer/tokenizer.json ] && TOK=(--tokenizer .dev/smollm2-tokenizer)
W=/tmp/piilab-gpu  # models and data (the 8B shape is 15 GB); gpu.json is copied to $OUT
mkdir -p $W; GGUF=()  # SmolLM2's real weights, joined from the parts the calls before carried
if [ -f .gguf/SHA256 ]; then
  cat .gguf/part-* > $W/smollm2.gguf
  if [ "$(sha256sum $W/smollm2.gguf | cut -d' ' -f1)" = "$(cat .gguf/SHA256)" ]; then GGUF=(--gguf $W/smollm2.gguf)
  else el "the GGUF's parts do not add up to it (one did not travel?): $(ls .gguf | tr '\n' ' ')"; fi
fi
part() { el "$1 (limit $2 s)"; timeout "$2" python3 benchmarks/gpu.py --out $W --parts "$1" "${TOK[@]}" "${GGUF[@]}" > "$OUT/$1.log" 2>&1; echo "rc $?"; grep -aoE "(piilab|trl|decode|eval|profile|extract)[a-z0-9 -]*: .*" "$OUT/$1.log" | cut -c1-400; cp $W/gpu.json "$OUT/" 2>/dev/null; }
# Each part's own limit in seconds, cut to what is left of the whole run's: a device command may
# run 600 s, so the run stops its last part at DEADLINE seconds (default 560) and still prints
# the table; a part cut short leaves its progress lines in its log.
declare -A LIMIT=([decode]=170 [train]=150 [qlora]=240 [eval]=45 [profile]=60 [extract]=300)
DEADLINE=${DEADLINE:-560}
for p in ${1//,/ }; do
  left=$(( DEADLINE - ($(date +%s) - S) )); limit=$(( ${LIMIT[$p]:-120} < left ? ${LIMIT[$p]:-120} : left ))
  if [ "$p" = extract ] && [ ${#GGUF[@]} -eq 0 ]; then el "extract skipped: no SmolLM2 weights (.gguf/)"
  elif [ "$limit" -gt 20 ]; then part "$p" "$limit"; else el "$p skipped: ${left} s left"; fi
done
el table; python3 benchmarks/gpu.py --table $W | tee "$OUT/table.md"
el done
