#!/usr/bin/env bash
# The GPU checks of a session that is lent a GPU machine, as one prepared call.
#
# The GPU machine has torch, torchaudio, transformers and most of what ALP needs, but not
# ALP itself, pydantic or soundfile, and it cannot download anything. So:
#
#   here (2 minutes):  bash benchmarks/gpu_session.sh prepare
#       builds ALP's wheels and downloads the missing ones for the GPU machine's Python 3.12
#       into .gpu/whl, and copies the bundled MiniLM tokenizer files (not its weights) into
#       .gpu/tokenizer; .gpu/ is git-ignored and about 10 MiB.
#   on the GPU (one call, about 8 minutes; with the machine's start and the second call below
#   it takes most of a 15-minute device budget):
#       run(command="bash benchmarks/gpu_session.sh run", carry=[".gpu"], timeout_s=590)
#       installs the wheels under /tmp/site and writes into $OUT: nvidia-smi.txt,
#       fbank_precision.json/.log (the GPU's float32 and float64 features against Kaldi's
#       exact ones, and their cost per batch), gpu_loader.json/.log (the loader with
#       features on the GPU against the CPU ceiling, one core's x N and N cores' side by
#       side, and where the GPU's features differ from the CPU's), gpu_loader_profile.txt
#       (the main process over one epoch with 14 workers), gpu_train_step.json/.log (the
#       Zipformer base step compiled as built, with channels-last depthwise convolutions
#       and with CUDA graphs: samples/s and MFU) and gpu_train_step_profile.txt (each
#       case's heaviest kernels).
#       Both scripts write their JSON after every row, so one stopped at its timeout keeps
#       what it measured. A second call, if the session's device time allows (the compiled
#       d1024 x 24 Transformer did not finish inside one call's limit beside other work;
#       compiled by layers it compiles about 4x faster):
#       run(command='GPU_PRECISION_ARGS="--device cuda --clips 4" GPU_LOADER_ARGS="--workers
#       2 --clips 64 --epochs 1" GPU_STEP_TIMEOUT=420 GPU_STEP_ARGS="--steps 6 --cases
#       transformer-large:128:bf16:compile-regional,transformer-large:128:bf16:compile"
#       bash benchmarks/gpu_session.sh run', carry=[".gpu"], timeout_s=500)
#
# GPU_PRECISION_ARGS, GPU_LOADER_ARGS and GPU_STEP_ARGS replace each script's default
# arguments, GPU_PRECISION_TIMEOUT, GPU_LOADER_TIMEOUT and GPU_STEP_TIMEOUT their time
# limits in seconds; PYTHON and GPU_PYTHON_VERSION the interpreter and the version the
# wheels are for. A dry run here: GPU_PYTHON_VERSION=3.11 ... prepare, then
# PYTHON=.venv/bin/python OUT=/tmp/o GPU_PRECISION_ARGS="--clips 4"
# GPU_LOADER_ARGS="--device cpu --workers 1 --clips 40" GPU_STEP_ARGS="--device cpu
# --cases default:2:fp32 --frames 100 --steps 1" ... run
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  py=${PYTHON:-.venv/bin/python}
  rm -rf .gpu && mkdir -p .gpu/whl .gpu/tokenizer
  "$py" -m pip wheel -q --no-deps -w .gpu/whl packages/alp-core packages/alp-data \
    packages/alp-models packages/alp-objectives packages/alp-eval packages/alp-train
  pins=$("$py" -m pip freeze | grep -i -E '^(pydantic|pydantic[-_]core|annotated-types|typing-inspection|soundfile|cffi|pycparser)==')
  # shellcheck disable=SC2086
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .gpu/whl $pins
  dir=$("$py" -c 'from alp_models.text.tokenizer import minilm_model_dir; print(minilm_model_dir())')
  for f in config.json special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt; do
    cp "$dir/$f" .gpu/tokenizer/
  done
  ls .gpu/whl && du -sh .gpu
  ;;
run)
  out=${OUT:-gpu-out}
  mkdir -p "$out"
  py=${PYTHON:-python3}
  rm -rf /tmp/site
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
  # the Zipformer's compiled step three ways: as built, with its depthwise convolutions over
  # a channels-last view (cuDNN) and with CUDA graphs (the step is launch-bound)
  STEP_CASES=zipformer-base:120:bf16:compile,zipformer-base-cl:120:bf16:compile
  STEP_CASES=$STEP_CASES,zipformer-base:120:bf16:compile=reduce-overhead
  status=0
  # where the GPU's float32 / float64 features lie against Kaldi's exact ones (~20 s)
  # shellcheck disable=SC2086
  timeout "${GPU_PRECISION_TIMEOUT:-45}" "$py" benchmarks/fbank_precision.py \
    ${GPU_PRECISION_ARGS:---device cuda} --out "$out/fbank_precision.json" 2>&1 \
    | tee "$out/fbank_precision.log" || status=1
  # shellcheck disable=SC2086
  timeout "${GPU_LOADER_TIMEOUT:-170}" "$py" benchmarks/gpu_loader.py \
    ${GPU_LOADER_ARGS:---workers 4,14 --clips 2048 --profile "$out/gpu_loader_profile.txt"} \
    --tokenizer .gpu/tokenizer --out "$out/gpu_loader.json" 2>&1 | tee "$out/gpu_loader.log" \
    || status=1
  # shellcheck disable=SC2086
  timeout "${GPU_STEP_TIMEOUT:-345}" "$py" benchmarks/gpu_train_step.py \
    ${GPU_STEP_ARGS:---steps 6 --cases "$STEP_CASES"} --tokenizer .gpu/tokenizer \
    --profile "$out/gpu_train_step_profile.txt" --out "$out/gpu_train_step.json" 2>&1 \
    | tee "$out/gpu_train_step.log" || status=1
  exit $status
  ;;
*)
  echo "usage: bash benchmarks/gpu_session.sh prepare|run (see the comment at its top)" >&2
  exit 2
  ;;
esac
