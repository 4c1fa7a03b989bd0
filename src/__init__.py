"""Engine package. Importing it turns MLflow's telemetry off for every process of ours.

MLflow 3 starts a telemetry thread that, without internet, races with the environment
(`KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'`) and can break a tracking call; our jobs
run on clusters without internet, so it is off unless a user turns it on explicitly. Ray's
usage statistics (the `ray` env backend) likewise.
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
