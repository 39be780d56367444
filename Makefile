# Two commands for a new user: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test docs bench lint clean reproduce studies

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# A small catapult-toy sweep (rerunning resumes and trains nothing),
# then the finite-vs-infinite kernel demo.
demo: $(STAMP)
	$(PY) -m ntk_dist run sweeps/demo.yaml --out results/demo_sweep
	$(PY) -m ntk_dist.cli.demo --out results/demo

test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m mkdocs build --strict -q --site-dir build/site

# The documentation site (mkdocs.yml, docs/) into build/site; warnings are errors.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir build/site

# The seed studies of docs/theory.md §6 at full size, then the report (docs/guide.md).
# Each run resumes when repeated; REPRO=dir puts them elsewhere.
REPRO       ?= results/reproduce
REPRODUCE   := finite_vs_infinite ensemble ntk_convergence width_scaling_fc width_scaling_toy \
               catapult_toy relu_fc
reproduce: $(STAMP)
	for s in $(REPRODUCE); do \
	  $(PY) -m ntk_dist run sweeps/$$s.yaml --out $(REPRO)/$$s || exit 1; \
	done
	$(PY) -m ntk_dist report $(REPRO)

# The three published phase-transition studies of docs/studies.md, each run then
# reported into $(STUDIES_OUT)/<name>: 2-core size (on a shared 2-core VM: 16 and 31 min for
# cohen_eos and lewkowycz_fig2, over 40 min for kalra_phase_diagram; docs/studies.md);
# `make studies SIZE=_full` runs the cluster-size specs sweeps/<name>_full.yaml.
STUDIES     := lewkowycz_fig2 kalra_phase_diagram cohen_eos
STUDIES_OUT ?= results
SIZE        ?=
studies: $(STAMP)
	for s in $(STUDIES); do \
	  $(PY) -m ntk_dist run sweeps/$${s}$(SIZE).yaml --out $(STUDIES_OUT)/$${s}$(SIZE) || exit 1; \
	  $(PY) -m ntk_dist report $(STUDIES_OUT)/$${s}$(SIZE) || exit 1; \
	done

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; PYTHONPATH=. $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check ntk_dist tests bench tools docs
	$(VENV)/bin/lint-imports
	$(PY) tools/check_architecture.py

clean:
	rm -rf results .pytest_cache build/site
