# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-lanes check hub clean

$(STAMP): pyproject.toml constraints.txt scripts/install
	VENV=$(VENV) PY=$(PY) scripts/install
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/ailab demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-lanes: $(STAMP)   # experimental, not CI's: the timing tests on a core of their own (tests/_lanes.py)
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests._lanes -q

test-fast: $(STAMP)   # the inner loop: everything but grading runs, load and notebook executions
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

check: $(STAMP)
	BIN=$(BIN) scripts/check

# A workshop on this machine: JupyterHub on 127.0.0.1:$(HUB_PORT) with every lab released (docs/scale.md).
HUB_DIR ?= out/hub
HUB_PORT ?= 8000
hub: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/ailab hub $(HUB_DIR) --port $(HUB_PORT) $(if $(HUB_LABS),--labs $(HUB_LABS))

clean:
	rm -rf $(VENV) .cache build *.egg-info
