# Two entry points that work on a fresh machine with Python 3.11 and the package index.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: demo test test-fast install lint bench clean

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

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
