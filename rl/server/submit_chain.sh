#!/bin/bash
# Submit batches of scenarios as a chain of SLURM jobs training one model:
#   rl/server/submit_chain.sh rl/configs/scenarios/heavy_load.yaml rl/configs/scenarios/heavy_load_batch2.yaml
# Each job after the first resumes from the latest registered version of the model and
# starts only if the previous job succeeded (--dependency=afterok). Job names come from
# the scenarios file names. NETWORK, TIMESTEPS, ... are passed on from the environment.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SCENARIOS.yaml [SCENARIOS2.yaml ...]" >&2; exit 2; }
NETWORK="${NETWORK:-rl/configs/network/grid6_realistic.yaml}"
MODEL_NAME="${MODEL_NAME:-$(basename "${NETWORK%.*}")}"
previous=""
for scenarios in "$@"; do
    name="$(basename "${scenarios%.*}")"
    export_vars="ALL,NETWORK=${NETWORK},SCENARIOS=${scenarios},MODEL_NAME=${MODEL_NAME},JOB_NAME=${name}"
    dependency=()
    if [ -n "$previous" ]; then
        export_vars="${export_vars},RESUME_FROM=models:/${MODEL_NAME}/latest"
        dependency=(--dependency="afterok:${previous}")
    elif [ -n "${RESUME_FROM:-}" ]; then
        export_vars="${export_vars},RESUME_FROM=${RESUME_FROM}"
    fi
    previous=$(sbatch --parsable --job-name="$name" "${dependency[@]}" --export="$export_vars" rl/server/train_rl.slurm)
    echo "submitted ${name}: job ${previous}"
done
