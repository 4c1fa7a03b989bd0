# A Ray cluster over the nodes of a SLURM allocation, for the `ray` env backend.
# Sourced by train_rl.slurm when ENV_BACKEND=ray (train_rl_multinode.slurm sets it); not run alone.
#
#   ray_cluster_start   the head on this node (the batch host: the trainer runs here), one Ray
#                       node on every other node of the job (srun, one task each), and
#                       RAY_EXTRA_NODES more Ray nodes on this node (default 0; two Ray nodes on
#                       one machine, as the tests use); waits until all have joined. Sets
#                       RAY_ADDRESS (HOST:PORT) and RAY_ENV_SLOTS (the env actors the cluster
#                       holds: RAY_CPUS_PER_NODE per Ray node, default the CPUs of a task).
#   ray_cluster_stop    ends the Ray nodes (their srun steps, then `ray stop` on every node: the
#                       nodes are this job's own). Safe to call twice; train_rl.slurm runs it on exit.
#
# RAY_PORT (default 6379 + SLURM_JOB_ID mod 1000, so jobs sharing a node do not clash) is the
# head's port. RAY_START_TIMEOUT (default 180 s) bounds
# the wait for the nodes. Unless RAY_AUTH_MODE is set, the cluster takes a token of its own
# (RAY_AUTH_TOKEN, in the environment of the job's processes only): Ray's token file in $HOME,
# shared by every job, would otherwise decide, and nodes started from it may not agree. Every node needs the repository and its venv at the same path (a
# shared file system), as the models folder, which the envs write to.

RAY_STEP_PIDS=()
RAY_STOPPED=0

ray_log() { echo "[ray_cluster $(date '+%F %T')] $*"; }

# How many Ray nodes have joined the cluster at RAY_ADDRESS (0 while the head is not up).
ray_nodes_alive() {
    timeout 60 python - "$RAY_ADDRESS" <<'EOF' 2>/dev/null || echo 0
import sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(sum(1 for node in ray.nodes() if node["Alive"]))
EOF
}

ray_cluster_start() {
    local head cpus others head_ip expected deadline=$((SECONDS + ${RAY_START_TIMEOUT:-180}))
    head="${SLURMD_NODENAME:-$(hostname -s)}"
    cpus="${RAY_CPUS_PER_NODE:-${SLURM_CPUS_PER_TASK:-1}}"
    RAY_PORT="${RAY_PORT:-$((6379 + ${SLURM_JOB_ID:-0} % 1000))}"
    head_ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    head_ip="${head_ip:-$(hostname)}"
    RAY_ADDRESS="${head_ip}:${RAY_PORT}"
    mapfile -t others < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-$head}" 2>/dev/null | grep -vx "$head" || true)
    expected=$((1 + ${#others[@]} + ${RAY_EXTRA_NODES:-0}))
    RAY_ENV_SLOTS=$((expected * cpus))
    if [ -z "${RAY_AUTH_MODE:-}" ]; then
        RAY_AUTH_TOKEN="$(python -c 'import secrets; print(secrets.token_hex(32))')"
        export RAY_AUTH_MODE=token RAY_AUTH_TOKEN
    fi
    # the env actors import this repository's code, as the trainer does (whatever the venv points at)
    export PYTHONPATH="${REPO}${PYTHONPATH:+:$PYTHONPATH}"
    ray_log "head on ${head} at ${RAY_ADDRESS}; ${#others[@]} other node(s), ${RAY_EXTRA_NODES:-0} extra Ray node(s) here; ${cpus} CPUs each"
    srun --overlap --nodes=1 --ntasks=1 -w "$head" ray start --head --block --node-ip-address="$head_ip" \
        --port="$RAY_PORT" --num-cpus="$cpus" \
        --include-dashboard=false --disable-usage-stats &
    RAY_STEP_PIDS+=($!)
    until (exec 3<>"/dev/tcp/${head_ip}/${RAY_PORT}") 2>/dev/null; do
        kill -0 "${RAY_STEP_PIDS[0]}" 2>/dev/null || { ray_log "the head exited (see above)"; return 1; }
        [ "$SECONDS" -lt "$deadline" ] || { ray_log "the head did not start in ${RAY_START_TIMEOUT:-180} s"; return 1; }
        sleep 2
    done
    if [ "${#others[@]}" -gt 0 ]; then
        srun --overlap --nodes="${#others[@]}" --ntasks="${#others[@]}" --ntasks-per-node=1 --exclude="$head" \
            ray start --block --address="$RAY_ADDRESS" --num-cpus="$cpus" --disable-usage-stats &
        RAY_STEP_PIDS+=($!)
    fi
    local extra
    for ((extra = 0; extra < ${RAY_EXTRA_NODES:-0}; extra++)); do
        srun --overlap --nodes=1 --ntasks=1 -w "$head" \
            ray start --block --address="$RAY_ADDRESS" --num-cpus="$cpus" --disable-usage-stats &
        RAY_STEP_PIDS+=($!)
    done
    local alive
    while :; do
        alive="$(ray_nodes_alive)"
        [ "${alive:-0}" -ge "$expected" ] 2>/dev/null && break
        [ "$SECONDS" -lt "$deadline" ] || { ray_log "only ${alive:-0} of ${expected} Ray nodes joined in ${RAY_START_TIMEOUT:-180} s"; return 1; }
        sleep 2
    done
    ray_log "cluster up: ${expected} Ray node(s), ${RAY_ENV_SLOTS} env slots"
    export RAY_ADDRESS
}

ray_cluster_stop() {
    [ "$RAY_STOPPED" = 0 ] || return 0
    RAY_STOPPED=1
    [ "${#RAY_STEP_PIDS[@]}" -gt 0 ] || return 0
    ray_log "stopping the Ray cluster (ray stop on every node)"
    local nodes
    nodes="${SLURM_JOB_NUM_NODES:-1}"
    srun --overlap --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 ray stop >/dev/null 2>&1 || true
    # `ray start --block` waits for a signal even when its processes are gone: end the steps
    kill -TERM "${RAY_STEP_PIDS[@]}" 2>/dev/null || true
    wait "${RAY_STEP_PIDS[@]}" 2>/dev/null || true
    ray_log "Ray cluster stopped"
}
