"""Road network building: grid or given net file -> a network folder with signal programs."""

from src.network.artifacts import INFO_FILE_NAME, NET_FILE_NAME, NetworkArtifacts
from src.network.builder import build_network, validate_network_params
from src.network.phases import PhasePlan, read_phase_plans

__all__ = [
    "INFO_FILE_NAME",
    "NET_FILE_NAME",
    "NetworkArtifacts",
    "PhasePlan",
    "build_network",
    "read_phase_plans",
    "validate_network_params",
]
