"""Defaults and key sets of an RL experiment: the one place each of them is written down.

`ExperimentConfig` (src/rl/experiment_config.py) takes every default from here. Simulation
defaults (network, traffic, signal timing, end time, SUMO seed) are the engine's own, taken
from `src.params`, so a training scenario and a plain `python -m src.cli` run agree.

An experiment is described by five YAML files with disjoint keys (DESIGN.md section 4):
network, scenarios, algorithm, reward, execution. The key sets below say which key lives in
which file; `ALGORITHM_EXECUTION_SHARED_KEYS` may appear in both algorithm and execution
(execution wins), so a quick test can shrink the rollout without its own algorithm file.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Mapping, Optional, Tuple

from src import params as P

# --- network file -------------------------------------------------------------------------
DEFAULT_NETWORK_SEED = P.DEFAULT_NETWORK_SEED
DEFAULT_GRID_DIMENSION = P.DEFAULT_GRID_DIMENSION
DEFAULT_JUNCTIONS_TO_REMOVE = 0  # a count, or a comma list of junction IDs ("B1,C2")
DEFAULT_BLOCK_SIZE_M = P.DEFAULT_BLOCK_SIZE_M
DEFAULT_LANE_COUNT = P.DEFAULT_LANE_COUNT
DEFAULT_STEP_LENGTH = P.DEFAULT_STEP_LENGTH
DEFAULT_LAND_USE_BLOCK_SIZE_M = P.DEFAULT_LAND_USE_BLOCK_SIZE_M
DEFAULT_ATTRACTIVENESS = None  # the engine's: land_use on a grid, uniform on a net file
DEFAULT_SIGNAL_PROGRAMS = None  # the engine's: keep a net file's own, opposites on a grid
DEFAULT_NET_FILE = None
DEFAULT_CYCLE_LENGTHS: Tuple[int, ...] = (P.DEFAULT_CYCLE_LENGTH,)
DEFAULT_CYCLE_STRATEGY = "fixed"
DEFAULT_MIN_GREEN = P.DEFAULT_MIN_GREEN
DEFAULT_YELLOW_TIME = P.DEFAULT_YELLOW_TIME
# What the policy decides (README "Control modes"): `cycle_splits` green shares once per
# cycle; `phase_select` every `decision_interval` s, per junction, the green to hold next.
CONTROL_MODES: Tuple[str, ...] = ("cycle_splits", "phase_select")
DEFAULT_CONTROL_MODE = "cycle_splits"
DEFAULT_DECISION_INTERVAL = P.DEFAULT_DECISION_INTERVAL

# How an episode picks its cycle length from `cycle_lengths`: always the first, a random
# one (from the env's seed), or each in turn.
CYCLE_STRATEGIES: Tuple[str, ...] = ("fixed", "random", "sequential")

# --- scenarios file -----------------------------------------------------------------------
DEFAULT_NUM_VEHICLES = P.DEFAULT_NUM_VEHICLES
DEFAULT_PRIVATE_TRAFFIC_SEED = P.DEFAULT_PRIVATE_TRAFFIC_SEED
DEFAULT_PUBLIC_TRAFFIC_SEED = P.DEFAULT_PUBLIC_TRAFFIC_SEED
DEFAULT_ROUTING_STRATEGY = P.DEFAULT_ROUTING_STRATEGY
DEFAULT_VEHICLE_TYPES = P.DEFAULT_VEHICLE_TYPES
DEFAULT_PASSENGER_ROUTES = P.DEFAULT_PASSENGER_ROUTES
DEFAULT_DEPARTURE_PATTERN = P.DEFAULT_DEPARTURE_PATTERN
DEFAULT_START_TIME_HOUR = P.DEFAULT_START_TIME_HOUR

# Traffic values a scenario leaves out.
DEFAULT_SCENARIO: Dict[str, object] = {
    "num_vehicles": DEFAULT_NUM_VEHICLES,
    "private_traffic_seed": DEFAULT_PRIVATE_TRAFFIC_SEED,
    "public_traffic_seed": DEFAULT_PUBLIC_TRAFFIC_SEED,
    "routing_strategy": DEFAULT_ROUTING_STRATEGY,
    "vehicle_types": DEFAULT_VEHICLE_TYPES,
    "passenger_routes": DEFAULT_PASSENGER_ROUTES,
    "departure_pattern": DEFAULT_DEPARTURE_PATTERN,
    "start_time_hour": DEFAULT_START_TIME_HOUR,
}

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
DEFAULT_REWARD_PARAMS: Dict[str, float] = {}  # empty: the reward's own defaults (src.rl.reward)

# --- execution file -----------------------------------------------------------------------
DEFAULT_TOTAL_TIMESTEPS = 100_000
DEFAULT_CHECKPOINT_FREQ = 10_000
DEFAULT_EVAL_FREQ = 0  # 0: no evaluation during training
# A scenarios file whose scenarios every evaluation runs (held-out traffic); None: the
# training scenarios. Evaluations judge on mean travel time and drive best model + early stop.
DEFAULT_EVAL_SCENARIOS = None
DEFAULT_N_EVAL_EPISODES = 1
DEFAULT_EARLY_STOPPING_PATIENCE = 0  # 0: no early stopping (needs eval_freq > 0 otherwise)
DEFAULT_EARLY_STOPPING_MIN_DELTA = 0.0
DEFAULT_END_TIME = P.DEFAULT_END_TIME
DEFAULT_PARALLEL_ENVS = 1
DEFAULT_SINGLE_ENV = False
DEFAULT_EXPERIMENT_NAME = None  # None: named after the network
DEFAULT_MODEL_NAME = None  # None: named after the network
DEFAULT_MODELS_DIR = "rl/models"
DEFAULT_DEVICE = "cpu"
DEFAULT_LOG_INTERVAL = 1
DEFAULT_SUMO_SEED = P.DEFAULT_SUMO_SEED
# A worker whose env step (one cycle, or an episode reset with route generation) takes longer
# is treated as stuck: killed and restarted. Generous: a heavy reset takes tens of seconds.
DEFAULT_ENV_STEP_TIMEOUT_S = 600.0
DEFAULT_MAX_ENV_RESTARTS = 3  # per env and run; one more failure ends the run with a checkpoint

DEVICE_PATTERN = r"cpu|auto|mps|cuda(:\d+)?"

# --- which key lives in which file ----------------------------------------------------------
CONFIG_GROUPS: Tuple[str, ...] = ("network", "scenarios", "algorithm", "reward", "execution")

NETWORK_KEYS: FrozenSet[str] = frozenset({
    "network_seed", "grid_dimension", "junctions_to_remove", "block_size_m", "lane_count",
    "step_length", "land_use_block_size_m", "attractiveness", "signal_programs",
    "net_file", "cycle_lengths", "cycle_strategy", "min_green", "yellow_time",
    "control_mode", "decision_interval",
})

# Keys of one scenario entry (the scenarios file itself holds only `scenarios: [...]`).
SCENARIO_TRAFFIC_KEYS: FrozenSet[str] = frozenset(DEFAULT_SCENARIO)
SCENARIO_KEYS: FrozenSet[str] = SCENARIO_TRAFFIC_KEYS | {"name"}
SCENARIOS_FILE_KEYS: FrozenSet[str] = frozenset({"scenarios"})

ALGORITHM_EXECUTION_SHARED_KEYS: FrozenSet[str] = frozenset({"n_steps", "batch_size", "n_epochs", "seed"})

ALGORITHM_KEYS: FrozenSet[str] = frozenset({
    "learning_rate", "clip_range", "batch_size", "n_steps", "n_epochs", "gamma", "gae_lambda",
    "max_grad_norm", "ent_coef", "vf_coef", "log_std_init", "lr_schedule", "lr_final",
    "lr_decay_rate", "ent_schedule", "ent_initial", "ent_final", "ent_decay_steps", "net_arch",
    "activation", "features", "seed", "normalize_observations", "normalize_reward",
    "policy_sharing",
})

REWARD_KEYS: FrozenSet[str] = frozenset({"reward_function", "reward_params"})

EXECUTION_KEYS: FrozenSet[str] = frozenset({
    "total_timesteps", "checkpoint_freq", "eval_freq", "n_eval_episodes",
    "early_stopping_patience", "early_stopping_min_delta", "end_time", "parallel_envs",
    "single_env", "experiment_name", "model_name", "models_dir", "device", "log_interval",
    "sumo_seed", "env_step_timeout_s", "max_env_restarts", "eval_scenarios",
}) | ALGORITHM_EXECUTION_SHARED_KEYS

# Top-level keys each file may hold.
GROUP_KEYS: Dict[str, FrozenSet[str]] = {
    "network": NETWORK_KEYS,
    "scenarios": SCENARIOS_FILE_KEYS,
    "algorithm": ALGORITHM_KEYS,
    "reward": REWARD_KEYS,
    "execution": EXECUTION_KEYS,
}

# A monolithic experiment file (experiments/*.yaml) holds every group's keys at top level.
EXPERIMENT_FILE_KEYS: FrozenSet[str] = frozenset().union(*GROUP_KEYS.values())
BASE_CONFIG_KEY = "base_config"


# --- registries written elsewhere (imported lazily: configs load without them) --------------


def _known_rewards() -> Optional[Dict[str, Optional[FrozenSet[str]]]]:
    """Reward names of `src.rl.reward.REWARD_FUNCTIONS` with their parameter names.

    None when the reward module cannot be imported (then names are not checked). A name maps
    to None when its entry does not say which parameters it takes (then those are not checked).
    An entry may carry its defaults as a `params` attribute or be a mapping of defaults itself.
    """
    try:
        from src.rl.reward import REWARD_FUNCTIONS
    except ImportError:
        return None
    known: Dict[str, Optional[FrozenSet[str]]] = {}
    for name, entry in REWARD_FUNCTIONS.items():
        params = getattr(entry, "params", None)
        if params is None and isinstance(entry, Mapping):
            params = entry
        known[str(name)] = frozenset(params) if isinstance(params, (Mapping, list, tuple, set, frozenset)) else None
    return known


def _known_features() -> Optional[Dict[str, FrozenSet[str]]]:
    """Feature names per group from `src.rl.traffic_analysis`; None when it cannot be imported."""
    try:
        from src.rl.traffic_analysis import EDGE_FEATURES, JUNCTION_FEATURES, NETWORK_FEATURES
    except ImportError:
        return None
    return {
        "edge": frozenset(EDGE_FEATURES),
        "junction": frozenset(JUNCTION_FEATURES),
        "network": frozenset(NETWORK_FEATURES),
    }
