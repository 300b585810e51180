# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean runner

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned resolve can pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/easrec run synthetic --preset quick --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

# Every test not marked slow (slow: over ~20 s each, such as real latency tables, exports and whole pipeline runs),
# in one worker per core (pytest-xdist): 111 s against 161 s serial on the 2-core machine, same minute.
test-fast: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m "not slow" -n auto

# The native C++ runner (runner/) against the installed ExecuTorch wheel; needs cmake and a C++ compiler.
runner: $(STAMP)
	$(VENV)/bin/easrec runner build --out build/runner

clean:
	rm -rf $(VENV) runs build *.egg-info
