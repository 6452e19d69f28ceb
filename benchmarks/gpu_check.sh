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
# sharedgrad: rl.shared_prompt_pass=packed, issue 37 item 2 -> $OUT/sharedprompt_packed.log),
# sftprofile (issue 37: one 7B SFT step at the paper's pixel budget, 1,225 image tokens in a 1,600-token prompt + 400
# target tokens, split by phase — vision tower, language model, loss, backward, optimizer — with torch.profiler's
# top kernels; AdamW with torch's default foreach kernels against the fused one where the states fit, i.e. on a
# GPU with >= 100 GB; on an 80 GB H100 the 7B AdamW states do not fit one GPU and SGD stands in, which the log says),
# varlen (7B SFT step at the paper's pixel budget, 980 px = 1,225 image tokens: sdpa vs
# model.attn_implementation=egt_varlen, plus the varlen kernel's gpu test), liger (the same step with
# model.liger: Liger's RMSNorm + SwiGLU and its fused linear cross-entropy in the SFT loss, its gpu test, and
# with varlen every SFT fast path at once (packing + egt_varlen + Liger); needs the wheel carried, see below),
# sftpack (7B SFT step, targets a mix of 256 .. 1,024 tokens: padded vs sft.packing's one packed row and
# rows of <= 2,048 tokens, under sdpa and under egt_varlen; the optimizer as sftprofile's first), decode
# (benchmarks/bench_decode.py: greedy tokens/s of egt's generate, generation.decode dynamic vs static vs compiled,
# 7B bf16, batch 64 then 16, 32 new tokens; rows in $OUT/decode.jsonl as they finish, T_DECODE=90 s).
# Logs: $OUT/env.txt, $OUT/pytest_gpu.log, $OUT/bench.jsonl (+ bench_*.log), $OUT/logprob.log, $OUT/sftprofile_*.log,
# $OUT/sftpack_*.log, $OUT/decode.jsonl.
set -u
OUT=${OUT:-gpu_check_out}
PARTS=${PARTS:-"env pytest bench3b bench7b"}
# Issue 37's device check in calls of at most 8 1/3 minutes each (each preset's limits sum to <= 500 s), in order of
# priority (a 15-minute device budget holds about two):
#   PARTS=issue37   where SFT's time goes, the packed gradient pass, decode, pytest -m gpu
#   PARTS=issue37b  SFT packed vs padded under sdpa and egt_varlen, egt_varlen vs sdpa at the pixel budget
#   PARTS=issue37c  Liger (carry .wheels): its gpu test, the SFT step with it, every SFT fast path at once
case "$PARTS" in
  # issue37: sftprofile's 120 s are the part's whole (split over its optimizers: two on a >= 100 GB GPU, else one);
  # pytest -m gpu runs the kernels' bf16 unit tests too (packed shared prompt, cache path, compiled decode)
  # (limits sum to 500 s; sharedgrad's fourth variant, packing_varlen, added 50 s to its part)
  issue37) PARTS="env sftprofile sharedgrad decode pytest"; T_PROFILE_PART=${T_PROFILE_PART:-120}
           T_PACKED=${T_PACKED:-200}; T_DECODE=${T_DECODE:-80}; T_PYTEST=${T_PYTEST:-100}; DECODE_BATCHES=${DECODE_BATCHES:-64}
           PYTEST_GPU=${PYTEST_GPU:-"tests/unit/rl/test_shared_prompt_packed.py tests/unit/rl/test_shared_prompt.py tests/unit/rl/test_packing.py
             tests/unit/eval/test_decode.py tests/integration/test_gpu_scale.py"} ;;
  issue37b) PARTS="env sftpack varlen"; T_BENCH=${T_BENCH:-55}; T_VARLEN_TEST=${T_VARLEN_TEST:-60} ;;
  issue37c) PARTS="env liger"; T_BENCH=${T_BENCH:-100} ;;
esac
T_PYTEST=${T_PYTEST:-240}
PYTEST_GPU=${PYTEST_GPU:-tests/integration/test_gpu_scale.py}  # the files the pytest part runs with -m gpu
T_BENCH=${T_BENCH:-180}
T_LOGPROB=${T_LOGPROB:-240}
# SMOKE=1: every part on this machine's CPU at tiny shapes, to check the script, the benchmarks' flags and their
# code paths before device time is spent (argparse keeps an option's last value, so these arguments, appended to
# each call, override the part's own; the gpu tests skip). Figures from a smoke run measure nothing.
if [ "${SMOKE:-0}" = 1 ]; then
  SM_SCALE="--device cpu --shape tiny --batch 2 --prompt 48 --target 16 --new 8 --image 56 --steps 1"
  SM_LOGPROB="--device cpu --shape v152k --batch 8 --group 8 --new 8 --prompt 48 --image 56 --repeats 1"
  SM_DECODE="--device cpu --shape tiny --batches 2 --new 4 --prompt 48 --image 56"
else
  SM_SCALE=""; SM_LOGPROB=""; SM_DECODE=""
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 WANDB_MODE=offline
has() { [[ " $PARTS " == *" $1 "* ]]; }
# 7B AdamW (bf16 weights + grads + two states, ~66 GB) fits one GPU of >= 100 GB only; elsewhere SGD stands in
GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
if [ "${GPU_MIB:-0}" -ge 100000 ]; then OPT7B=adamw; else OPT7B=sgd; fi

if has env; then
  {
    date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 - <<'EOF'
import importlib, importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
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
  timeout "$T_PYTEST" python3 -m pytest -m gpu -q -rA -n 3 --dist load -p no:cacheprovider --timeout "$T_PYTEST" \
    $PYTEST_GPU >"$OUT/pytest_gpu.log" 2>&1
  echo "pytest -m gpu: rc=$?"; tail -15 "$OUT/pytest_gpu.log"
fi

bench() {  # shape, extra args
  local shape=$1; shift
  timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape "$shape" "$@" $SM_SCALE \
    >"$OUT/bench_$shape.log" 2>&1
  echo "bench $shape: rc=$?"
  grep '^{' "$OUT/bench_$shape.log" | tee -a "$OUT/bench.jsonl"
  grep -v '^{' "$OUT/bench_$shape.log" | tail -5
}
has bench3b && bench 3b
has bench7b && bench 7b --optim adamw

if has sftloss; then  # SFT step at 7B: egt's chunked NLL vs transformers' full-logit loss, fresh processes
  for loss in egt hf; do
    timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape 7b --only sft --sft-loss $loss $SM_SCALE \
      >"$OUT/sft_$loss.log" 2>&1
    echo "sft loss $loss: rc=$?"; grep '^{' "$OUT/sft_$loss.log" | tee -a "$OUT/bench.jsonl"
    grep -v '^{' "$OUT/sft_$loss.log" | tail -3
  done
fi

if has sftprofile; then  # issue 37: where a 7B SFT step's time goes (fresh process per optimizer)
  if [ "$OPT7B" = adamw ]; then optims="adamw adamw_fused"; else optims="sgd"; echo "sftprofile: ${GPU_MIB:-no GPU,} ${GPU_MIB:+MiB:} SGD stands in for AdamW"; fi
  t_profile=${T_PROFILE:-150}  # per optimizer; a preset's T_PROFILE_PART is the part's whole, split
  if [ -n "${T_PROFILE_PART:-}" ]; then t_profile=$((T_PROFILE_PART / $(echo $optims | wc -w))); fi
  for optim in $optims; do
    timeout "$t_profile" python3 benchmarks/bench_gpu_scale.py --shape 7b --only sft --profile --optim "$optim" \
      --batch 4 --prompt 1600 --target 400 --image 980 --steps 2 $SM_SCALE >"$OUT/sftprofile_$optim.log" 2>&1
    echo "sftprofile $optim: rc=$?"; grep '^{' "$OUT/sftprofile_$optim.log" | tee -a "$OUT/bench.jsonl"
  done
fi

if has sftpack; then  # 7B SFT step on a mix of lengths (targets 1/4 .. 1 of 1,024): padded vs packed (issue 37 item 3)
  # packed: one row (the varlen layout; under sdpa a dense 8·~1.6k² block mask); packed2k: rows of <= 2,048 tokens
  # packed_varlen / packed2k_varlen: the same rows under model.attn_implementation=egt_varlen (cu_seqlens from the
  # position resets, no W² block mask; the pairing issue 37 item 3 needs on a GPU)
  for mode in padded packed packed2k packed_varlen packed2k_varlen; do
    flag=""; [[ $mode == packed* ]] && flag="--packing"; [[ $mode == packed2k* ]] && flag="$flag --packing-max-tokens 2048"
    [[ $mode == *_varlen ]] && flag="$flag --attn egt_varlen"
    timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape 7b --only sft --sft-mix --target 1024 --optim "$OPT7B" $flag $SM_SCALE \
      >"$OUT/sftpack_$mode.log" 2>&1
    echo "sft $mode (length mix): rc=$?"; grep '^{' "$OUT/sftpack_$mode.log" | tee -a "$OUT/bench.jsonl"
    grep -v '^{' "$OUT/sftpack_$mode.log" | tail -3
  done
fi

if has plainload; then  # a judge egt saved loads in plain transformers (torchvision is on GPU images)
  timeout "${T_PLAIN:-120}" python3 -m pytest -q -rA -n 0 -p no:cacheprovider tests/unit/models/test_models.py \
    -k "plain_transformers or stock" >"$OUT/plainload.log" 2>&1
  echo "plain transformers load: rc=$?"; tail -5 "$OUT/plainload.log"
fi

if has logprob; then
  timeout "$T_LOGPROB" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --new 1024 \
    --prompt 320 --image 224 $SM_LOGPROB >"$OUT/logprob.log" 2>&1
  echo "logprob: rc=$?"; tail -20 "$OUT/logprob.log"
fi

if has decode; then  # issue 37 item 6: decode tokens/s, dynamic vs static vs compiled, 7B bf16, batch 64 then 16
  timeout "${T_DECODE:-90}" python3 benchmarks/bench_decode.py --device cuda --shape 7b --batches ${DECODE_BATCHES:-64 16} --new 32 \
    --prompt 320 --image 224 $SM_DECODE >"$OUT/decode.jsonl" 2>"$OUT/decode.log"
  echo "decode: rc=$?"; cat "$OUT/decode.jsonl"; tail -5 "$OUT/decode.log"
fi

if has sharedprompt; then  # one prompt pass per group at 7B: 2 prompts (1,225 image tokens) x G = 8, 512 new tokens
  timeout "${T_SHARED:-300}" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --group 8 \
    --new 512 --prompt 1300 --image 980 --variants after shared --repeats 2 --no-checkpointing $SM_LOGPROB \
    >"$OUT/sharedprompt.log" 2>&1
  echo "sharedprompt: rc=$?"; tail -12 "$OUT/sharedprompt.log"
fi

# the gradient pass under activation checkpointing (the 7B configs): every row whole vs a packed row per group (item 2)
# vs rl.packing (item 3: each group at its real length; completions stop at 256 .. 512) vs rl.packing under
# egt_varlen (prefix-grouped varlen sequences, no 4D mask: torch's varlen kernel). The cache path ("shared")
# declines under checkpointing (= every row whole), so it is not run: four processes of 2 repeats fit T_PACKED.
if has sharedgrad; then
  timeout "${T_PACKED:-240}" python3 benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --group 8 \
    --new 512 --prompt 1300 --image 980 --variants after packed packing packing_varlen --passes grad --repeats 2 \
    --checkpointing on $SM_LOGPROB >"$OUT/sharedprompt_packed.log" 2>&1
  echo "sharedprompt packed: rc=$?"; tail -8 "$OUT/sharedprompt_packed.log"
fi

# The 7B SFT step at the paper's pixel budget: 4 sequences of 1,300 prompt tokens (1,225 of them image) + 512
# targets; SGD so that bf16 parameters + gradients (~33 GB) fit an H100 too. Relative figures: the same call.
sft7b() {  # name, extra args
  local name=$1; shift
  timeout "$T_BENCH" python3 benchmarks/bench_gpu_scale.py --shape 7b --only sft --optim sgd --batch 4 \
    --prompt 1300 --target 512 --image 980 --steps 3 "$@" $SM_SCALE >"$OUT/sft7b_$name.log" 2>&1
  echo "sft7b $name: rc=$?"; grep '^{' "$OUT/sft7b_$name.log" | tee -a "$OUT/bench.jsonl"
  grep -v '^{' "$OUT/sft7b_$name.log" | grep -i "egt_varlen\|liger\|error" | tail -3
}

if has varlen; then  # egt_varlen: torch's varlen_attn (CUDA flash kernel), LM + the vision tower's windows
  timeout "${T_VARLEN_TEST:-120}" python3 -m pytest -m gpu -q -rA -n 0 -p no:cacheprovider \
    tests/unit/models/test_attention.py >"$OUT/varlen_test.log" 2>&1
  echo "varlen gpu test: rc=$?"; tail -3 "$OUT/varlen_test.log"
  sft7b sdpa --attn sdpa
  sft7b egt_varlen --attn egt_varlen
fi

# Liger (egt[liger]): the device has no internet, so carry the wheel. Here:
#   pip download liger-kernel==0.8.5 --no-deps -d .wheels      (.wheels/ is git-ignored)
# then run with carry=[".wheels"]; this part installs it without dependencies (the CUDA image has triton).
if has liger; then
  if ! python3 -c "import liger_kernel" 2>/dev/null; then
    python3 -m pip install --no-deps --no-index .wheels/liger_kernel-*.whl >"$OUT/liger_install.log" 2>&1
    echo "liger install: rc=$?"; tail -1 "$OUT/liger_install.log"
  fi
  # --liger: RMSNorm + SwiGLU kernels and the fused linear cross-entropy in egt's SFT loss ("sft_fused_ce": true)
  timeout "${T_LIGER_TEST:-120}" python3 -m pytest -m gpu -q -rA -n 0 -p no:cacheprovider tests/unit/sft/test_loss.py \
    >"$OUT/liger_test.log" 2>&1
  echo "liger fused loss gpu test: rc=$?"; tail -3 "$OUT/liger_test.log"
  sft7b sdpa_liger --attn sdpa --liger
  sft7b egt_varlen_liger --attn egt_varlen --liger
  sft7b egt_varlen_liger_packed --attn egt_varlen --liger --packing  # every SFT fast path at once
fi
