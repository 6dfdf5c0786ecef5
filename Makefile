PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src benchmarks

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/robustaudit demo --out demo-report

bench: $(STAMP)
	$(BIN)/python benchmarks/peers.py --ours-only
	$(BIN)/python benchmarks/blackbox.py --ours-only
	$(BIN)/python benchmarks/decision.py --ours-only
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/transfer.py
	$(BIN)/python benchmarks/topk.py
	$(BIN)/python benchmarks/certify.py
	$(BIN)/python benchmarks/adaptive.py
	$(BIN)/python benchmarks/l0.py
	$(BIN)/python benchmarks/harden.py

.venv-peers/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install -q torch==2.13.0
	.venv-peers/bin/pip install -q -e '.[all,dev]'
	.venv-peers/bin/pip install -q --no-deps torchattacks foolbox adversarial-robustness-toolbox
	.venv-peers/bin/pip install -q eagerpy gitpython requests tqdm typing-extensions six packaging
	touch .venv-peers/.installed

bench-peers: .venv-peers/.installed
	.venv-peers/bin/python benchmarks/peers.py
	.venv-peers/bin/python benchmarks/blackbox.py
	.venv-peers/bin/python benchmarks/decision.py
	.venv-peers/bin/python benchmarks/adaptive.py
	.venv-peers/bin/python benchmarks/l0.py

clean:
	rm -rf $(VENV) .venv-peers demo-report
