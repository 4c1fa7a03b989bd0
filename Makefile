# Set-up and the everyday commands. `make demo` and `make test` each do all set-up first.
PYTHON ?= python3
VENV ?= .venv
# Where pip may also look for torch. Empty (the default): pip's own configuration decides; on a
# plain Linux machine that is PyPI, whose torch is the CUDA build (several GB). For the CPU build:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The tests also need the `cluster` extra (Ray); `make setup` and `make demo` stay without it.
CLUSTER_STAMP := $(VENV)/.installed-cluster

.PHONY: setup test demo simulate heavy-table ui bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	touch $(STAMP)

$(CLUSTER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,cluster]' $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	touch $(CLUSTER_STAMP)

# One pytest worker per core (`-n auto`), each taking whole test files (`--dist loadfile`): a
# file's module fixtures (a trained model, a SLURM cluster, a Ray cluster) are built once, by one worker.
test: setup $(CLUSTER_STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

# The main job on the local default: train one policy on the laptop scenarios (one SUMO
# process per scenario) into the SQLite MLflow store of this folder, then `make ui`.
demo: setup
	$(PY) rl/local/train.py --all-scenarios

# One plain simulation of a small scenario with a classic controller.
simulate: setup
	$(PY) -m src.cli --grid_dimension 4 --block_size_m 200 --num_vehicles 800 --end-time 1800 \
		--routing_strategy "shortest 70 realtime 30" --traffic_control max_pressure --output-dir outputs/demo_simulation

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

bench: setup
	$(PY) bench/run_all.py --quick

clean:
	rm -rf outputs .pytest_cache
