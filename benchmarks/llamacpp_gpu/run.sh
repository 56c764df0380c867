#!/usr/bin/env bash
# One-shot llama.cpp GPU benchmark kit (H200 / sm_90).  Run from the repo root:
#
#     OUT=/some/dir bash benchmarks/llamacpp_gpu/run.sh
#
#   a. environment info                        -> $OUT/log.txt
#   b. configure + build llama-bench, CUDA      -> $OUT/build.txt  (tail in log.txt)
#      (soft cap 330 s; hard limit deadline-100 s so the bench always keeps >= 100 s)
#   c. random-weight GGUF models, in the background, started before the build
#                                               -> $OUT/gen.txt, files in $KIT_MODEL_DIR
#   d. llama-bench grid, one call per model     -> $OUT/bench.jsonl (+ markdown in log.txt)
#   e. nvidia-smi sampler (1 s) during d.       -> $OUT/smi.csv
#   f. summary table                            -> $OUT/summary.txt
# Each step runs under its own `timeout`; a failed step never stops later independent ones.
# Everything ends by $KIT_DEADLINE seconds (default 520) after the start.
# Models are generated in bench order and deleted after their last bench call (disk is 64 GiB).
#
# KIT_CPU=1  dry mode for a CPU-only box: CPU build (reuses /tmp/kit-build), tiny presets,
#            no nvidia-smi.  Everything else (flow, logs, jsonl) is identical.
set -u -o pipefail
SECONDS=0
export PYTHONDONTWRITEBYTECODE=1

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${LLAMA_SRC:-$KIT_DIR/llama.cpp}   # a trimmed llama.cpp tree (README.md)
OUT=${OUT:-/tmp/kit-out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: > "$LOG"; : > "$OUT/bench.jsonl"; : > "$OUT/build.txt"; : > "$OUT/gen.txt"

LLAMA_BUILD_NUMBER=11312   # b11312 (from upstream release naming, see README.md)
LLAMA_BUILD_COMMIT=0c1e570 # ggml-org/llama.cpp 0c1e57098bba43ac29e6e3b677cdceebdd22334f (2026-10-01)

JOBS=${KIT_JOBS:-$(nproc)}
SOFT_CAP=330                              # build is expected to finish by then (logged if not)
BUILD_CAP=${KIT_BUILD_CAP:-}              # optional hard cap (s) for configure+build; default: deadline-100
MARGIN=$((3 << 30))                       # keep 3 GiB free on the model disk
MAX_MODEL_BYTES=${KIT_MAX_MODEL_BYTES:-0} # optional cap on bytes of models on disk at once (0: none)

COMMON_CMAKE=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_NUMBER=$LLAMA_BUILD_NUMBER -DLLAMA_BUILD_COMMIT=$LLAMA_BUILD_COMMIT)

if [[ ${KIT_CPU:-0} == 1 ]]; then
    MODE=cpu
    BUILD_DIR=${KIT_BUILD_DIR:-/tmp/kit-build}
    MODEL_DIR=${KIT_MODEL_DIR:-/tmp/kit-models-run}
    DEADLINE=${KIT_DEADLINE:-600}
    CMAKE_ARGS=("${COMMON_CMAKE[@]}" -DGGML_CUDA=OFF)
    # tag arch preset type   (bench order == generation order)
    MODELS=("l8b-q4_0 llama tiny Q4_0" "q30b-q4_0 qwen3moe tiny-moe Q4_0" "l8b-q8_0 llama tiny Q8_0"
            "l8b-f16 llama tiny F16" "q30b-q4_k qwen3moe tiny-moe Q4_K")
    GRID="-ngl 99 -p 64 -n 16 -b 2048 -ub 32,64 -fa 0,1 -r 1"
    DEPTH="-ngl 99 -p 64 -n 16 -d 128 -fa 0,1 -r 1"
else
    MODE=cuda
    BUILD_DIR=${KIT_BUILD_DIR:-/tmp/build}
    MODEL_DIR=${KIT_MODEL_DIR:-/tmp/models}
    DEADLINE=${KIT_DEADLINE:-520}
    CMAKE_ARGS=("${COMMON_CMAKE[@]}" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real
                -DGGML_CUDA_FA_QUANTS=f16-f16 -DGGML_CUDA_NCCL=OFF)
    MODELS=("l8b-q4_0 llama llama-3.1-8b Q4_0" "q30b-q4_0 qwen3moe qwen3-30b-a3b Q4_0"
            "l8b-q8_0 llama llama-3.1-8b Q8_0" "l8b-f16 llama llama-3.1-8b F16"
            "q30b-q4_k qwen3moe qwen3-30b-a3b Q4_K")
    GRID="-ngl 99 -p 512,2048 -n 128 -b 2048 -ub 512,2048 -fa 0,1 -r 3"
    DEPTH="-ngl 99 -p 512 -n 128 -d 4096 -fa 0,1 -r 2"
fi
# bench calls in priority order: "tag kind cap_seconds"
BENCH_PLAN=("l8b-q4_0 grid 120" "q30b-q4_0 grid 120" "l8b-q4_0 depth 60" "l8b-q8_0 grid 120"
            "l8b-f16 grid 120" "q30b-q4_k grid 120")
# KIT_PLAN=FILE: a bash file that sets MODELS and BENCH_PLAN instead (entries "tag args cap
# [VAR=value] llama-bench arguments...", e.g. "l1b-q4_0 args 60 GGML_CUDA_DISABLE_GRAPHS=1 -p 0 -n 128")
if [[ -n ${KIT_PLAN:-} ]]; then
    # shellcheck disable=SC1090
    source "$KIT_PLAN"
fi
BENCH_BIN=$BUILD_DIR/bin/llama-bench

# ------------------------------------------------------------------------------------ helpers
stamp() { local l; while IFS= read -r l; do printf '[%(%H:%M:%S)T +%3ds] %s\n' -1 "$SECONDS" "$l"; done; }
log()   { printf '[%(%H:%M:%S)T +%3ds] %s\n' -1 "$SECONDS" "$*" | tee -a "$LOG"; }
left()  { echo $((DEADLINE - SECONDS)); }
# run_step NAME TIMEOUT OUTFILE CMD...   (output stamped into OUTFILE; rc returned)
run_step() {
    local name=$1 to=$2 file=$3; shift 3
    local t=$SECONDS rc
    (( to < 1 )) && to=1
    log ">>> $name (timeout ${to}s): $*"
    timeout -k 10 "$to" "$@" 2>&1 | stamp >> "$file"
    rc=${PIPESTATUS[0]}
    log "<<< $name rc=$rc$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMEOUT)') step=$((SECONDS - t))s total=${SECONDS}s"
    return "$rc"
}

GEN_PID=""; SMI_PID=""
cleanup() {
    [[ -n $SMI_PID ]] && kill "$SMI_PID" 2>/dev/null
    if [[ -n $GEN_PID ]] && kill -0 "$GEN_PID" 2>/dev/null; then
        [[ -f $MODEL_DIR/.gen.pid ]] && kill "$(cat "$MODEL_DIR/.gen.pid")" 2>/dev/null
        kill "$GEN_PID" 2>/dev/null
    fi
    rm -rf "$MODEL_DIR"
}
trap cleanup EXIT
trap 'log "signal received, stopping"; exit 130' INT TERM

log "llamacpp_gpu run.sh mode=$MODE out=$OUT deadline=${DEADLINE}s build_cap=${BUILD_CAP:-auto} jobs=$JOBS"
log "src=$SRC build=$BUILD_DIR models=$MODEL_DIR llama.cpp commit=$LLAMA_BUILD_COMMIT build=$LLAMA_BUILD_NUMBER"

# ------------------------------------------------------------------------------ a. environment
{
    echo "host: $(hostname) | $(uname -srm) | nproc=$(nproc)"
    grep -m1 'model name' /proc/cpuinfo
    free -g | head -2
    df -h /tmp 2>&1 | tail -n +1
    if [[ $MODE == cuda ]]; then
        timeout 30 nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv
        timeout 30 nvidia-smi
    fi
    command -v nvcc >/dev/null && timeout 30 nvcc --version | tail -2
    cmake --version | head -1
    (command -v ninja >/dev/null && echo "ninja $(ninja --version)") || echo "ninja: not found"
    c++ --version | head -1
    python3 -c 'import sys, numpy; print("python", sys.version.split()[0], "numpy", numpy.__version__)'
} 2>&1 | stamp | tee -a "$LOG"
log "a. env done, elapsed=${SECONDS}s"

# -------------------------------------------------------------- c. model generation (background)
mkdir -p "$MODEL_DIR"
gen_models() {
    local spec tag arch preset type f need avail used t rc
    for spec in "${MODELS[@]}"; do
        read -r tag arch preset type <<<"$spec"
        f=$MODEL_DIR/$tag.gguf
        need=$(python3 "$KIT_DIR/make_gguf.py" --arch "$arch" --preset "$preset" --type "$type" --out "$f" --dry-run | sed -n 's/^bytes=//p')
        if [[ -z $need ]]; then echo "gen $tag: dry-run failed"; touch "$f.failed"; continue; fi
        while :; do   # wait for disk space (the bench deletes models after their last use)
            avail=$(df -P -B1 "$MODEL_DIR" | awk 'NR==2{print $4}')
            used=$(find "$MODEL_DIR" -maxdepth 1 -name '*.gguf*' -printf '%s\n' | awk '{s+=$1} END{print s+0}')
            if (( avail >= need + MARGIN )) && (( MAX_MODEL_BYTES == 0 || used + need <= MAX_MODEL_BYTES )); then break; fi
            if (( SECONDS >= DEADLINE - 30 )); then
                echo "gen $tag: giving up, no room (avail=$avail used=$used need=$need)"; touch "$f.failed"; continue 2
            fi
            sleep 1
        done
        t=$SECONDS
        echo "gen $tag: start ($arch $preset $type, need=$need avail=$avail)"
        nice -n 5 timeout -k 5 $((DEADLINE - SECONDS)) python3 "$KIT_DIR/make_gguf.py" \
            --arch "$arch" --preset "$preset" --type "$type" --out "$f" &
        echo $! > "$MODEL_DIR/.gen.pid"
        wait $!; rc=$?
        echo "gen $tag: rc=$rc elapsed=$((SECONDS - t))s size=$(stat -c %s "$f" 2>/dev/null || echo none)"
        [[ $rc == 0 && -f $f ]] || touch "$f.failed"
    done
    echo "gen: all done"
}
gen_models > >(stamp >> "$OUT/gen.txt") 2>&1 &
GEN_PID=$!
log "c. model generation started in background (pid $GEN_PID) -> gen.txt"

# ---------------------------------------------------------------------------------- b. build
if [[ $MODE == cuda ]]; then
    NVCC=$(command -v nvcc || true)
    for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-13.0/bin/nvcc /usr/local/cuda-13/bin/nvcc; do
        [[ -z $NVCC && -x $c ]] && NVCC=$c
    done
    if [[ -n $NVCC ]]; then
        export PATH="$(dirname "$NVCC"):$PATH"
        CMAKE_ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
        log "nvcc: $NVCC"
    else
        log "WARNING: nvcc not found on PATH or /usr/local/cuda*/bin; leaving it to CMake"
    fi
fi
GEN=Ninja; command -v ninja >/dev/null || GEN="Unix Makefiles"
# shellcheck disable=SC2206
[[ -n ${KIT_EXTRA_CMAKE:-} ]] && CMAKE_ARGS+=(${KIT_EXTRA_CMAKE})
BUILD_T0=$SECONDS
run_step "b1 configure ($GEN)" 120 "$OUT/build.txt" cmake -S "$SRC" -B "$BUILD_DIR" -G "$GEN" "${CMAKE_ARGS[@]}"
BUILD_RC=$?
if [[ $BUILD_RC == 0 ]]; then
    # One uninterrupted build (killing ninja at the soft cap and resuming would throw away the
    # in-flight nvcc jobs): hard limit = deadline - 100 s, so >= 100 s are always left for d.
    BUILD_TO=$(( $(left) - 100 ))
    [[ -n $BUILD_CAP ]] && (( BUILD_CAP - (SECONDS - BUILD_T0) < BUILD_TO )) && BUILD_TO=$(( BUILD_CAP - (SECONDS - BUILD_T0) ))
    run_step "b2 build llama-bench" "$BUILD_TO" "$OUT/build.txt" \
        cmake --build "$BUILD_DIR" --target llama-bench -j "$JOBS"
    BUILD_RC=$?
    (( SECONDS - BUILD_T0 > SOFT_CAP )) && log "NOTE: build took $((SECONDS - BUILD_T0))s, over the ${SOFT_CAP}s soft cap"
fi
grep -E -i -m 40 'error|warning: .*(deprecated|unsupported)|FAILED' "$OUT/build.txt" | tee -a "$LOG" > /dev/null
tail -n 15 "$OUT/build.txt" >> "$LOG"
log "b. build rc=$BUILD_RC, build elapsed=$((SECONDS - BUILD_T0))s, total=${SECONDS}s"
if [[ -x $BENCH_BIN ]]; then
    { timeout 20 "$BENCH_BIN" --version; timeout 30 "$BENCH_BIN" --list-devices; } 2>&1 | stamp | tee -a "$LOG"
fi

# ---------------------------------------------------------------------------------- d. bench
declare -A LAST_USE
for i in "${!BENCH_PLAN[@]}"; do read -r tag _ <<<"${BENCH_PLAN[$i]}"; LAST_USE[$tag]=$i; done

wait_model() {   # $1 = file; 0 when ready
    local f=$1
    while [[ ! -f $f ]]; do
        [[ -f $f.failed ]] && return 1
        kill -0 "$GEN_PID" 2>/dev/null || { [[ -f $f ]]; return; }
        (( SECONDS >= DEADLINE - 20 )) && return 1
        sleep 1
    done
}

if [[ -x $BENCH_BIN ]]; then
    if [[ $MODE == cuda ]]; then
        nvidia-smi --query-gpu=timestamp,power.draw,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu,memory.used \
            --format=csv -l 1 > "$OUT/smi.csv" 2>&1 &
        SMI_PID=$!
        log "e. nvidia-smi sampler started (pid $SMI_PID) -> smi.csv"
    fi
    for i in "${!BENCH_PLAN[@]}"; do
        read -r tag kind cap rest <<<"${BENCH_PLAN[$i]}"
        f=$MODEL_DIR/$tag.gguf
        args=$GRID; [[ $kind == depth ]] && args=$DEPTH; [[ $kind == args ]] && args=$rest
        envs=()
        while [[ $args =~ ^([A-Z_][A-Z0-9_]*=[^ ]*)\ (.*)$ ]]; do envs+=("${BASH_REMATCH[1]}"); args=${BASH_REMATCH[2]}; done
        if (( $(left) < 15 )); then log "d. skip $tag/$kind: only $(left)s left"; continue; fi
        t=$SECONDS
        if ! wait_model "$f"; then
            log "d. skip $tag/$kind: model not available (waited $((SECONDS - t))s)"
        else
            (( SECONDS - t > 0 )) && log "d. waited $((SECONDS - t))s for $tag"
            to=$cap; (( $(left) < to )) && to=$(left)
            log ">>> d. bench $tag/$kind (timeout ${to}s): ${envs[*]} llama-bench -m $f $args -o jsonl -oe md --progress"
            # stdout (jsonl, flushed per test) -> bench.jsonl ; stderr (markdown + progress) -> log
            { timeout -k 10 "$to" env "${envs[@]}" "$BENCH_BIN" -m "$f" $args -o jsonl -oe md --progress \
                2>&1 1>> "$OUT/bench.jsonl"; } | stamp | tee -a "$LOG"
            rc=${PIPESTATUS[0]}
            log "<<< d. bench $tag/$kind rc=$rc$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMEOUT)') step=$((SECONDS - t))s total=${SECONDS}s"
        fi
        if [[ ${LAST_USE[$tag]} == "$i" ]]; then rm -f "$f"; fi
    done
else
    log "d. SKIPPED: no llama-bench binary ($BENCH_BIN)"
fi
[[ -n $SMI_PID ]] && kill "$SMI_PID" 2>/dev/null; SMI_PID=""

# -------------------------------------------------------------------------------- f. summary
if kill -0 "$GEN_PID" 2>/dev/null; then
    log "generator still running; stopping it"
    [[ -f $MODEL_DIR/.gen.pid ]] && kill "$(cat "$MODEL_DIR/.gen.pid")" 2>/dev/null
    kill "$GEN_PID" 2>/dev/null
fi
wait "$GEN_PID" 2>/dev/null
log "generator log (gen.txt):"; grep -E 'gen |make_gguf\] wrote' "$OUT/gen.txt" | tee -a "$LOG" > /dev/null
timeout 30 python3 "$KIT_DIR/summarize.py" "$OUT/bench.jsonl" > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt" | tee -a "$LOG"
log "done: $(wc -l < "$OUT/bench.jsonl") bench rows, total elapsed ${SECONDS}s"
ls -la "$OUT" | tee -a "$LOG"
