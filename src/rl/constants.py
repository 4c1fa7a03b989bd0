"""Defaults and allowed values of the RL-only settings: the one place each is written down.

`ExperimentConfig` (src/rl/config/experiment.py) takes its RL defaults from here and its
simulation defaults (network, traffic, signal timing, end time, SUMO seed) from
`src/params.py` directly, so a training scenario and a plain `python -m src.cli` run agree.
Which key lives in which of the five YAML files is `src/rl/config/schema.py`'s.
"""

from __future__ import annotations

from typing import Dict, Tuple

from src import params as P

# --- network file (RL keys; the simulation defaults are `src.params`'s own) -------------------
# Cycle lengths an episode may use; the first is the network's programs' cycle.
DEFAULT_CYCLE_LENGTHS: Tuple[int, ...] = (P.DEFAULT_CYCLE_LENGTH,)
# How an episode picks its cycle length from `cycle_lengths`: always the first, a random
# one (from the env's seed), or each in turn.
CYCLE_STRATEGIES: Tuple[str, ...] = ("fixed", "random", "sequential")
DEFAULT_CYCLE_STRATEGY = "fixed"
# What the policy decides: `cycle_splits` green shares once per
# cycle; `phase_select` every `decision_interval` s, per junction, the green to hold next.
CONTROL_MODES: Tuple[str, ...] = ("cycle_splits", "phase_select")
DEFAULT_CONTROL_MODE = "cycle_splits"
# cycle_splits only: one more action value picks each cycle's length among `cycle_lengths`
# (the policy shortens cycles in light traffic, lengthens them in heavy).
DEFAULT_CYCLE_ACTION = False

# --- algorithm file -----------------------------------------------------------------------
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_CLIP_RANGE = 0.2
DEFAULT_BATCH_SIZE = 2048
DEFAULT_N_STEPS = 4096
DEFAULT_N_EPOCHS = 5
DEFAULT_GAMMA = 0.995
DEFAULT_GAE_LAMBDA = 0.98
DEFAULT_MAX_GRAD_NORM = 0.5
DEFAULT_ENT_COEF = 0.01
DEFAULT_VF_COEF = 0.5
DEFAULT_LOG_STD_INIT = -1.0
DEFAULT_LR_SCHEDULE = "constant"
DEFAULT_LR_FINAL = 5e-6
DEFAULT_LR_DECAY_RATE = 0.99995
DEFAULT_ENT_SCHEDULE = False  # False: ent_coef throughout; True or "linear": ent_initial -> ent_final
DEFAULT_ENT_INITIAL = 0.02
DEFAULT_ENT_FINAL = 0.001
DEFAULT_ENT_DECAY_STEPS = 500_000
DEFAULT_NET_ARCH: Tuple[int, ...] = (256, 256)
DEFAULT_ACTIVATION = "relu"
DEFAULT_SEED = 0
# `junction`: one small policy applied to every junction's local observation (parameter
# sharing, MPLight/RESCO); `network`: one MLP from the whole network's observation to every
# junction's action. None: `junction` for phase_select, `network` for cycle_splits (the only
# form cycle_splits has).
POLICY_SHARING_MODES: Tuple[str, ...] = ("junction", "network")
DEFAULT_POLICY_SHARING = None
#: Phase slots of the junction-shared input: None = the network's most phases per junction; a
#: fixed number (e.g. 8) pads every junction to it, so one policy runs on maps of other phase counts.
DEFAULT_PHASE_SLOTS = None
MAX_PHASE_SLOTS = 16
# Running mean/std normalisation of observations and rewards (SB3 VecNormalize). The
# statistics travel inside the model zip (src.rl.normalization), so evaluation, the pyfunc
# and resumed training see observations exactly as training did. Rewards are normalised by
# default: their scale (tens to hundreds) otherwise swamps the value function. Observations
# are not: the features are already in [0, 1], and running-std scaling blows up
# near-constant ones; on the quick learning test (1,500 steps) it cut the gain over the equal
# split from 69% to 23%.
DEFAULT_NORMALIZE_OBSERVATIONS = False
DEFAULT_NORMALIZE_REWARD = True
DEFAULT_NORMALIZATION_CLIP = 10.0  # normalised values are clipped to +-this (SB3's default)

LR_SCHEDULES: Tuple[str, ...] = ("constant", "linear", "exponential")
ENT_SCHEDULES: Tuple[str, ...] = ("linear",)  # besides true / false
ACTIVATIONS: Tuple[str, ...] = ("relu", "tanh", "elu", "leaky_relu")
NET_ARCH_KEYS: Tuple[str, ...] = ("pi", "vf")

# Observation features by group (names of src.rl.traffic_analysis's registries).
FEATURE_GROUPS: Tuple[str, ...] = ("edge", "junction", "network")
DEFAULT_FEATURES: Dict[str, Tuple[str, ...]] = {
    "edge": ("speed_ratio", "density", "halting_ratio", "trend"),
    "junction": ("phase_durations", "phase_pressure"),
    "network": ("vehicles", "mean_speed_ratio", "congestion_ratio", "cost"),
}

# --- reward file --------------------------------------------------------------------------
DEFAULT_REWARD_FUNCTION = "empirical"
#: The reward when control_mode is phase_select and no file names one (empirical is per cycle).
DEFAULT_PHASE_SELECT_REWARD = "delay"
DEFAULT_REWARD_PARAMS: Dict[str, float] = {}  # empty: the reward's own defaults (src.rl.reward)

# --- execution file -----------------------------------------------------------------------
DEFAULT_TOTAL_TIMESTEPS = 100_000
DEFAULT_CHECKPOINT_FREQ = 10_000
DEFAULT_EVAL_FREQ = 0  # 0: no evaluation during training
# A scenarios file whose scenarios every evaluation runs (held-out traffic); None: the
# training scenarios. Evaluations judge on mean travel time and drive best model + early stop.
DEFAULT_EVAL_SCENARIOS = None
#: SUMO seed of the first validation episode (then +1 per evaluation); None: `sumo_seed`, as training.
#: A seed far from the training episodes' keeps model selection off the traffic training saw.
DEFAULT_EVAL_SUMO_SEED = None
DEFAULT_N_EVAL_EPISODES = 1
DEFAULT_EARLY_STOPPING_PATIENCE = 0  # 0: no early stopping (needs eval_freq > 0 otherwise)
DEFAULT_EARLY_STOPPING_MIN_DELTA = 0.0
DEFAULT_PARALLEL_ENVS = 1
DEFAULT_SINGLE_ENV = False
DEFAULT_EXPERIMENT_NAME = None  # None: named after the network
DEFAULT_MODEL_NAME = None  # None: named after the network
DEFAULT_MODELS_DIR = "rl/models"
DEFAULT_DEVICE = "cpu"
# Torch threads of the training process. One: the policy is a small MLP beside SUMO processes;
# with a thread per core, torch's threads and the envs contend for the cores (a phase_select
# learning test on 2 busy cores: 185 s with torch's default threads, 15 s with one).
DEFAULT_TORCH_THREADS = 1
DEFAULT_LOG_INTERVAL = 1
# A worker whose env step (one cycle, or an episode reset with route generation) takes longer
# is treated as stuck: killed and restarted. Generous: a heavy reset takes tens of seconds.
DEFAULT_ENV_STEP_TIMEOUT_S = 600.0
DEFAULT_MAX_ENV_RESTARTS = 3  # per env and run; one more failure ends the run with a checkpoint
# Where the scenario envs run: `subprocess`, one process each on this node; `ray`, one Ray actor
# each, spread over the nodes of a Ray cluster (src/rl/ray_vec_env.py; needs the `cluster` extra).
ENV_BACKENDS: Tuple[str, ...] = ("subprocess", "ray")
DEFAULT_ENV_BACKEND = "subprocess"
# The Ray cluster to join: "auto" (the one started on this node), "HOST:PORT"; None: $RAY_ADDRESS,
# else a new Ray instance on this machine.
DEFAULT_RAY_ADDRESS = None
# CPUs Ray reserves for each training env actor (one SUMO simulation each); evaluation actors
# reserve none (they run while the training envs wait).
RAY_CPUS_PER_ENV = 1.0
# At the end of a run, how long to wait for an unreachable tracking server (seconds without a
# delivery) before leaving the rest of the run's records to `rl/sync.py` (exit code 4); after
# SIGTERM at most TRACKING_WAIT_AFTER_STOP_S, well inside SLURM's kill wait.
DEFAULT_TRACKING_WAIT_S = 60.0
TRACKING_WAIT_AFTER_STOP_S = 10.0

DEVICE_PATTERN = r"cpu|auto|mps|cuda(:\d+)?"

# --- sweeps (rl/sweep.py) -------------------------------------------------------------------
# Where a sweep's trials, study database and summary go (rl/sweeps/<study>).
DEFAULT_SWEEPS_DIR = "rl/sweeps"
SWEEP_PRUNERS: Tuple[str, ...] = ("median", "halving", "threshold", "none")
DEFAULT_SWEEP_PRUNER = "median"
# The median pruner judges a trial only once this many trials have finished, and never at
# a trial's first evaluation (an untrained policy says little about where it will end up).
SWEEP_MEDIAN_STARTUP_TRIALS = 5
SWEEP_WARMUP_EVALUATIONS = 1
# Seconds after which a budget lock left by a killed worker is broken.
SWEEP_LOCK_GRACE_S = 60
# A RUNNING trial whose worker gave no sign of life for this long (SIGKILL, a lost node) is
# failed and its values queued again by the next worker that asks for a trial. Workers mark
# their trial alive every quarter of it; it must outlast a busy storage's slowest write.
SWEEP_STALE_AFTER_S = 600
SWEEP_HEARTBEATS_PER_STALE = 4
