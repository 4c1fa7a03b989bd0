#!/bin/bash
# Submit batches of scenarios as a chain of SLURM jobs training one model, from any directory:
#
#   [CPUS=9] [MEM=16G] [TIME=2-00:00:00] [NETWORK=...] [TIMESTEPS=...] \
#     rl/server/submit_chain.sh SCENARIOS.yaml [SCENARIOS2.yaml ...] [-- train.py arguments]
#
# One file is a chain of one batch. Every job gets the chain id (CHAIN_ID, default
# <model name>-<date>-<random>) and its batch index (BATCH_INDEX 0, 1, ...); rl/server/train.py
# tags runs and model versions with them and resumes batch K from the newest complete version
# of batch K-1 of the same chain (not from models:/<name>/latest, which anyone may move).
# Each job after the first starts only if the previous one succeeded (--dependency=afterok);
# a batch that reaches its time limit requeues itself and continues (see train_rl.slurm).
#
# Environment:
#   CPUS, MEM, TIME   sbatch --cpus-per-task, --mem, --time of every job (default: the #SBATCH
#                     lines of train_rl.slurm: 4 CPUs, 8G, 24 h); PARALLEL_ENVS defaults to CPUS
#   NODES             several nodes per job: the envs on a Ray cluster over them
#                     (train_rl_multinode.slurm, sbatch --nodes; needs the `cluster` extra)
#   SBATCH_ARGS       more sbatch options, e.g. "--partition=long --account=traffic" (split on spaces)
#   NETWORK SCENARIOS ALGORITHM REWARD EXECUTION TIMESTEPS PARALLEL_ENVS MODEL_NAME: see train_rl.slurm
#   RESUME_FROM       the model batch 0 starts from (a file, runs:/ or models:/ URI); later
#                     batches always start from their predecessor in the chain
#   CHAIN_ID, FIRST_BATCH_INDEX   continue an existing chain, e.g. resubmit its batch 1 after a
#                     scancel: CHAIN_ID=<id> FIRST_BATCH_INDEX=1 submit_chain.sh batch2.yaml
#   LOG_DIR           where the jobs' output files go (default <repo>/rl/models)
#
# Arguments after `--` go to every job's rl/server/train.py (relative paths: the submit directory).
set -euo pipefail

usage() { echo "usage: [CPUS=N MEM=SIZE TIME=LIMIT ...] $0 SCENARIOS.yaml [SCENARIOS2.yaml ...] [-- train.py arguments]" >&2; exit 2; }
fail() { echo "$0: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SLURM_SCRIPT="$REPO/rl/server/train_rl.slurm"
[ -n "${NODES:-}" ] && SLURM_SCRIPT="$REPO/rl/server/train_rl_multinode.slurm"

batches=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; break ;;
        -h|--help) usage ;;
        -*) fail "unknown option $1 (sbatch options go in CPUS/MEM/TIME/SBATCH_ARGS, train.py options after --)" ;;
        *) batches+=("$1"); shift ;;
    esac
done
[ ${#batches[@]} -ge 1 ] || usage
train_args=("$@")

# Relative paths: the current directory first, then the repository (as the jobs do).
for i in "${!batches[@]}"; do
    scenarios="${batches[$i]}"
    if [ -f "$scenarios" ]; then
        batches[i]="$(cd "$(dirname "$scenarios")" && pwd)/$(basename "$scenarios")"
    elif [ "${scenarios#/}" != "$scenarios" ] || [ ! -f "$REPO/$scenarios" ]; then
        fail "scenarios file not found: $scenarios"
    fi
done
command -v sbatch >/dev/null || fail "sbatch not found (run this on a SLURM login node)"

NETWORK="${NETWORK:-rl/configs/network/grid6_realistic.yaml}"
MODEL_NAME="${MODEL_NAME:-$(basename "${NETWORK%.*}")}"
sanitize() { printf '%s' "$1" | tr -c 'A-Za-z0-9_-' '_'; }
CHAIN_ID="${CHAIN_ID:-$(sanitize "$MODEL_NAME")-$(date +%Y%m%d-%H%M%S)-$(printf '%04x' $((RANDOM % 65536)))}"
FIRST_BATCH_INDEX="${FIRST_BATCH_INDEX:-0}"
LOG_DIR="${LOG_DIR:-$REPO/rl/models}"
mkdir -p "$LOG_DIR"
LOG_DIR="$(cd "$LOG_DIR" && pwd)"

sbatch_opts=(--parsable --output="$LOG_DIR/slurm-%x-%j.out")
[ -n "${CPUS:-}" ] && sbatch_opts+=(--cpus-per-task="$CPUS")
[ -n "${MEM:-}" ] && sbatch_opts+=(--mem="$MEM")
[ -n "${TIME:-}" ] && sbatch_opts+=(--time="$TIME")
[ -n "${NODES:-}" ] && sbatch_opts+=(--nodes="$NODES")
# shellcheck disable=SC2206
[ -n "${SBATCH_ARGS:-}" ] && sbatch_opts+=($SBATCH_ARGS)

echo "chain ${CHAIN_ID}: model ${MODEL_NAME}, ${#batches[@]} batch(es), output in ${LOG_DIR}"
previous=""
index="$FIRST_BATCH_INDEX"
for scenarios in "${batches[@]}"; do
    name="$(basename "${scenarios%.*}")"
    job_env=(REPO_DIR="$REPO" NETWORK="$NETWORK" SCENARIOS="$scenarios" MODEL_NAME="$MODEL_NAME"
             JOB_NAME="$name" CHAIN_ID="$CHAIN_ID" BATCH_INDEX="$index")
    dependency=()
    unset_resume=()
    if [ -n "$previous" ]; then
        dependency=(--dependency="afterok:${previous}")
    fi
    if [ "$index" != 0 ] || [ -n "$previous" ]; then
        unset_resume=(-u RESUME_FROM)  # train.py resumes from the chain's previous batch
    fi
    # the variables travel in the environment (--export=ALL), so values may contain commas
    previous=$(env "${unset_resume[@]}" "${job_env[@]}" sbatch "${sbatch_opts[@]}" --job-name="$name" \
               "${dependency[@]}" --export=ALL "$SLURM_SCRIPT" "${train_args[@]}")
    previous="${previous%%;*}"
    echo "submitted ${name}: job ${previous} (batch ${index}${dependency:+, after job ${dependency[0]##*:}})"
    index=$((index + 1))
done
echo "follow it in MLflow: tag chain_id = '${CHAIN_ID}'; its newest complete version: models:/${MODEL_NAME}@chain-$(sanitize "$CHAIN_ID")"
