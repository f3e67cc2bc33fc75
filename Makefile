# ppo-course: two commands.
#   make lab    create .venv, install, open JupyterLab on the lessons
#   make test   create .venv if needed, install, run every test
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8888
# Tests use both cores; torch in each worker stays on one thread (tiny MLPs are faster so).
XDIST ?= -n 2

.PHONY: lab test install lessons solutions clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "ppo-course needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# torch is pinned to 2.13.0 in pyproject.toml: its CPU wheel is on the course machines.
# nbgrader comes with the tests (its round trip is one); learners do not need its menus in
# `make lab`. A teacher turns them back on: `jupyter labextension unlock @jupyter/nbgrader`,
# `jupyter labextension enable @jupyter/nbgrader`, `jupyter server extension enable nbgrader`.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	$(BIN)/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader
	$(BIN)/jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader \
	    nbgrader.server_extensions.validate_assignment nbgrader.server_extensions.assignment_list \
	    nbgrader.server_extensions.course_list
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) --ServerApp.root_dir=lessons

# Library, grader, course and browser tests; then every solution under strict nbval (stored
# outputs compared); then every lesson, exercises unfinished, runs once from a fresh kernel
# without an error: the browser tests run each in JupyterLab (Restart Kernel and Run All) and
# record it in $(RAN_IN_BROWSER); the lessons they did not run (all, without Chromium) run
# here under --nbval-lax. --dist loadfile keeps a file's tests (and the browser's one
# JupyterLab) together.
NBVAL := --nbval-current-env --nbval-cell-timeout=600 $(XDIST) --dist loadfile
RAN_IN_BROWSER := test-artifacts/browser/run_all_passed.txt
test: $(STAMP)
	rm -f $(RAN_IN_BROWSER)
	$(BIN)/python -m ppo_lib.course build --check
	$(BIN)/python -m pytest tests $(XDIST) --dist loadfile
	$(BIN)/python -m pytest --nbval solutions --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL)
	@left="$$($(BIN)/python tests/browser/ran_in_browser.py)" || exit 1; \
	if [ -n "$$left" ]; then \
	    echo $(BIN)/python -m pytest --nbval-lax $$left $(NBVAL); \
	    $(BIN)/python -m pytest --nbval-lax $$left $(NBVAL); \
	fi

# Maintainers: regenerate lessons/ from solutions/ (solutions are the single source).
lessons: $(STAMP)
	$(BIN)/python -m ppo_lib.course build

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
