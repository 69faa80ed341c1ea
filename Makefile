# ScratchMaker. The two commands: `make run` (the main job) and `make test` (all tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NBVAL  := --nbval-lax --nbval-current-env --nbval-cell-timeout=900

.PHONY: help setup run test unit browser lab slides student bench clean

help:
	@echo "make run      install if needed, execute every notebook, write HTML, slides and build/RESULTS.md"
	@echo "make test     install if needed, run the unit tests and every notebook under nbval"
	@echo "make lab | slides | student | bench | clean"

# The venv is (re)installed when missing or when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "installing the project and its dependencies into $(VENV) (a few minutes the first time)"
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m helpers.run

test: setup browser
	$(PY) -m pytest tests notebooks $(NBVAL) -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests -p no:cacheprovider

# Headless Chromium for the offline slides test (Debian's packages; needs root or sudo).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (Debian) for the slides test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: install chromium and chromium-driver to run the browser test (it is skipped without them)"; fi

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

slides: setup
	$(PY) -m helpers.slides

# Student copies: the notebooks without the cells tagged `solution`.
student: setup
	@mkdir -p build/student
	@for nb in notebooks/*.ipynb; do \
		$(VENV)/bin/nbstripout --drop-tagged-cells=solution < $$nb > build/student/$$(basename $$nb) || exit 1; \
	done
	@echo "student copies in build/student/"

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
	find data -mindepth 1 -maxdepth 1 ! -name README.md ! -name fixtures ! -name topic_words.txt -exec rm -rf {} +
