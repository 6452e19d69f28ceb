#!/usr/bin/env bash
# One prepared GPU session: the environment, `pytest -m gpu`, and bench_gpu_scale.py on the real
# Qwen2.5-VL shapes. Every part has its own time limit and its own log, so one failure does not hide
# the rest.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                      # everything
#   OUT=/tmp/gpu PARTS="env bench7b" bash benchmarks/gpu_check.sh  # some parts
#
# Parts: env, pytest (pytest -m gpu, parallel), sftloss (7B SFT step: egt's chunked NLL vs the full-logit
# loss), plainload (an egt-saved judge in plain transformers), bench3b, bench7b (AdamW: bf16 parameters and states
# fit one 141 GB H200), logprob (benchmarks/bench_rl_logprobs.py, 7B shapes: V = 152,064, 16 sequences
# of 320 + 1,024 tokens, before vs after chunking), sharedprompt (the same script, 7B, 2 prompts of 1,300
# tokens x G = 8 completions of 512: every row whole vs one prompt pass per group, no checkpointing; then the
# grad pass with checkpointing on, as the 7B configs run it: every row whole vs cache (declines: whole) vs packed,
# rl.shared_prompt_pass=packed, issue 37 item 2 -> $OUT/sharedprompt_packed.log).
# Logs: $OUT/env.txt, $OUT/pytest_gpu.log, $OUT/bench.jsonl (+ bench_*.log), $OUT/logprob.log.
set -u
OUT=${OUT:-gpu_check_out}
PARTS=${PARTS:-"env pytest bench3b bench7b"}
T_PYTEST=${T_PYTEST:-240}
T_BENCH=${T_BENCH:-180}
T_LOGPROB=${T_LOGPROB:-240}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 WANDB_MODE=offline
has() { [[ " $PARTS " == *" $1 "* ]]; }

if has env; then
  {
    date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 - <<'EOF'
import importlib, importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name())
for p in ["transformers", "tokenizers", "lightning", "hydra-core", "omegaconf", "datasets", "pyarrow",
          "fsspec", "deepspeed", "flash-attn", "vllm", "torchvision", "pillow", "safetensors", "accelerate"]:
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "-")
import egt, egt.stages.rl  # the package imports with this environment
print("egt imports from", egt.__file__)
EOF
  } >"$OUT/env.txt" 2>&1
  echo "env: rc=$?"
fi

if has pytest; then
  timeout "$T_PYTEST" python3 -m pytest -m gpu -q -rA -n 3 -p no:cacheprovider --timeout "$T_PYTEST" \
    tests/integration/test_gpu_scale.py >"$OUT/pytest_gpu.log" 2>&1
  echo "pytest -m gpu: rc=$?"; tail -15 "$OUT/pytest_gpu.log"
fi

bench() {  # shape, extra args
  local shape=$1; shift
  timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape "$shape" "$@" \
    >"$OUT/bench_$shape.log" 2>&1
  echo "bench $shape: rc=$?"
  grep '^{' "$OUT/bench_$shape.log" | tee -a "$OUT/bench.jsonl"
  grep -v '^{' "$OUT/bench_$shape.log" | tail -5
}
has bench3b && bench 3b
has bench7b && bench 7b --optim adamw

if has sftloss; then  # SFT step at 7B: egt's chunked NLL vs transformers' full-logit loss, fresh processes
  for loss in egt hf; do
    timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape 7b --only sft --sft-loss $loss \
      >"$OUT/sft_$loss.log" 2>&1
    echo "sft loss $loss: rc=$?"; grep '^{' "$OUT/sft_$loss.log" | tee -a "$OUT/bench.jsonl"
    grep -v '^{' "$OUT/sft_$loss.log" | tail -3
  done
fi

if has plainload; then  # a judge egt saved loads in plain transformers (torchvision is on GPU images)
  timeout "${T_PLAIN:-120}" python3 -m pytest -q -rA -p no:cacheprovider tests/unit/models/test_models.py \
    -k "plain_transformers or stock" >"$OUT/plainload.log" 2>&1
  echo "plain transformers load: rc=$?"; tail -5 "$OUT/plainload.log"
fi

if has logprob; then
  timeout "$T_LOGPROB" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --new 1024 \
    --prompt 320 --image 224 >"$OUT/logprob.log" 2>&1
  echo "logprob: rc=$?"; tail -20 "$OUT/logprob.log"
fi

if has sharedprompt; then  # one prompt pass per group at 7B: 2 prompts (1,225 image tokens) x G = 8, 512 new tokens
  timeout "${T_SHARED:-300}" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --group 8 \
    --new 512 --prompt 1300 --image 980 --variants after shared --repeats 2 --no-checkpointing \
    >"$OUT/sharedprompt.log" 2>&1
  echo "sharedprompt: rc=$?"; tail -12 "$OUT/sharedprompt.log"
  # the gradient pass under activation checkpointing (the 7B configs): the packed row per group (item 2)
  timeout "${T_PACKED:-240}" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --group 8 \
    --new 512 --prompt 1300 --image 980 --variants after shared packed --passes grad --repeats 2 \
    --checkpointing on >"$OUT/sharedprompt_packed.log" 2>&1
  echo "sharedprompt packed: rc=$?"; tail -8 "$OUT/sharedprompt_packed.log"
fi
