# Everything runs from a local virtual environment, made on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-data
JOBS ?= 2

.PHONY: demo test e2e lint format bench bench-s3 bench-operator crds chart-files clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/threshold-worker sample $(DEMO_DIR)/sample.zarr --dataset raw --shape 256,256,256 --voxel-size 8,4,4
	$(BIN)/threshold-worker run -ic $(DEMO_DIR)/sample.zarr -id raw -oc $(DEMO_DIR)/sample.zarr -od mask -th 0.5 --overwrite \
		--ome-zarr --pyramid 3 --block-shape 128,128,128
	$(BIN)/threshold-worker preview -ic $(DEMO_DIR)/sample.zarr -id raw -od mask --level 3 -o $(DEMO_DIR)/preview.png
	@echo "Preview of one slice (input | mask s0 | mask s3, 8x coarser): $(DEMO_DIR)/preview.png"
	$(BIN)/threshold-worker view -ic $(DEMO_DIR)/sample.zarr -id raw -od mask

# Unit and operator tiers in parallel; then the docker tier (one image build) and the kind
# tier, which skips with its reason where kind is missing. REQUIRE_DOCKER=1 makes a missing
# Docker engine a failure instead of a skip (CI sets it).
test: $(BIN)/.installed
	$(BIN)/pytest -n $(JOBS) -m "not docker and not e2e" tests
	$(BIN)/pytest -m "docker or e2e" -rs tests

e2e: $(BIN)/.installed
	$(BIN)/pytest -m e2e -rs tests

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The CRD is generated from the API model (operator/threshold_operator/api.py).
crds: $(BIN)/.installed
	$(BIN)/threshold-operator crd > crds/thresholdjobs.blockwise.dev.yaml

# The chart's copies: its CRD and the RBAC rules derived from the operator's API calls.
chart-files: crds
	cp crds/thresholdjobs.blockwise.dev.yaml charts/threshold-operator/crds/
	$(BIN)/threshold-operator rbac > charts/threshold-operator/files/rbac-rules.yaml

bench: $(BIN)/.bench-installed
	$(BIN)/python benchmarks/run.py

bench-s3: $(BIN)/.bench-installed
	$(BIN)/python benchmarks/s3.py

# Hundreds of ThresholdJobs against the operator tier's emulated API server (test extras only).
bench-operator: $(BIN)/.installed
	$(BIN)/python benchmarks/operator_scale.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build *.egg-info
