# Two entry points that work on a fresh machine with Python 3.11 and the package index.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: demo test test-fast install lint types bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/relapse demo --out $(DEMO_DIR)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The edit loop: everything but the tests that train models, start servers, run notebooks
# or a browser (@pytest.mark.slow). CI runs `make test`, slow tests included.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

# What the Bento installs (bentofile.yaml): the serve extra's closure at constraints.txt's pins.
requirements-serve.txt: $(BIN)/.installed constraints.txt pyproject.toml
	$(BIN)/python .ci/serve_requirements.py > $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory types

# mypy cannot follow setuptools' editable import hook, and package-dir in pyproject.toml
# installs features/ as relapse_risk.features and so on; mypy_path points at this tree of
# links with the installed layout, so relapse_risk.* resolves to the files of this checkout
# (errors name them under build/typecheck/). Strictness per package is in [tool.mypy]:
# features/, models/ and serving/ strict; training/ and monitoring/ with mypy's default flags
# (unannotated functions are not checked there); generator/ and the CLI modules not yet.
TYPES_TREE := build/typecheck/relapse_risk
types: $(BIN)/.installed
	rm -rf $(TYPES_TREE) && mkdir -p $(TYPES_TREE)
	ln -s $(CURDIR)/relapse_risk/*.py $(TYPES_TREE)/
	for d in features models training serving monitoring generator; do ln -s $(CURDIR)/$$d $(TYPES_TREE)/$$d; done
	$(BIN)/mypy -p relapse_risk.features -p relapse_risk.models -p relapse_risk.serving \
		-p relapse_risk.training -p relapse_risk.monitoring

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
