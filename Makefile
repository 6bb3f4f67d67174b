# Two commands set everything up on a fresh clone:
#   make demo   -> creates .venv, installs flowlab, renders the lecture figures to demo-out/
#   make test   -> creates .venv, installs flowlab with test extras, runs the test suite
#   make lab    -> (students) creates .venv if needed, opens JupyterLab on the course notebooks
#   make lab-instructor -> JupyterLab with nbgrader's instructor panels, on autograder/
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where torch comes from (CPU wheels); empty (make test TORCH_INDEX=) uses pip's default index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test bench lab lab-instructor env clean

$(STAMP): pyproject.toml autograder/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first, from the CPU-only index: on Linux PyPI's torch is the multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --retries 1)
	$(BIN)/python -m pip install --quiet -e ".[test]" -e ./autograder
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/flowlab demo --out demo-out

# Two workers, a test file each at a time (a file's module fixtures, e.g. the end-to-end batch, run once):
# most of the suite waits on kernels and subprocesses, so two files at once halve its wall time.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20 tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

lab: $(STAMP)
	# Students: nbgrader's Validate button, without its instructor panels (flowlab/lab.py says how;
	# it adds --allow-root when run as root).
	$(BIN)/python -m flowlab.lab notebooks/

lab-instructor: $(STAMP)
	# Instructors: every nbgrader panel (Formgrader, Create Assignment), in the course folder autograder/.
	# JupyterLab refuses to start as root (e.g. in a container) unless told to.
	cd autograder && ../$(BIN)/jupyter lab $$(test "$$(id -u)" = 0 && echo --allow-root)

bench: $(STAMP)
	$(BIN)/flowlab bench samplers

clean:
	rm -rf $(VENV) demo-out
