"""Traffic demand: route files from TrafficParams and a built network."""

from src.traffic.generator import generate_traffic, split_vehicle_counts, validate_traffic_params
from src.traffic.route_file import TrafficSummary, read_planned_departures, summarize_route_file

__all__ = [
    "TrafficSummary",
    "generate_traffic",
    "read_planned_departures",
    "split_vehicle_counts",
    "summarize_route_file",
    "validate_traffic_params",
]
