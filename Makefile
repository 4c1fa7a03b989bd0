# Set-up and the everyday commands. `make demo` and `make test` each do all set-up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo simulate bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

# The main job on the local default: one small simulation with every built-in controller.
simulate: setup
	$(PY) -m src.cli --grid_dimension 4 --block_size_m 200 --num_vehicles 800 --end-time 1800 \
		--routing_strategy "shortest 70 realtime 30" --traffic_control max_pressure --output-dir outputs/demo_simulation

demo: simulate

bench: setup
	$(PY) bench/bench_simulation.py

clean:
	rm -rf outputs .pytest_cache
