# The README's two commands, `make book` and `make test`, plus benchmarks. On a fresh clone
# they first create .venv and install the package into it (once; again when pyproject.toml
# changes). PYTHON=/other/python uses that interpreter and skips the virtual environment.
VENV := .venv
PYTHON ?= $(VENV)/bin/python
PROFILE ?= smoke
INSTALLED := $(VENV)/.installed

.PHONY: book test benchmarks

ifeq ($(PYTHON),$(VENV)/bin/python)
SETUP := $(INSTALLED)
endif

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

# smoke's companion settings (CIFAR-100, eps = 8/255) are built first and shown beside it; a
# longer profile's are not (hours): build or publish them on their own (README, settings)
SETTINGS ?= $(if $(filter smoke,$(PROFILE)),--all-settings,)

book: $(SETUP)  ## execute every notebook under $(PROFILE) (smoke: and its settings) and render the HTML book
	$(PYTHON) -m ntkbook build --profile $(PROFILE) $(SETTINGS)

test: $(SETUP)  ## the tests, the end-to-end smoke book build among them; two test files at a time
	$(PYTHON) -m pytest -q -rs -n 2 --dist loadfile --durations=15

benchmarks: $(SETUP)  ## step, attack and kernel throughput on the active JAX device
	$(PYTHON) benchmarks/limits.py
	$(PYTHON) benchmarks/throughput.py
	$(PYTHON) benchmarks/kernel_throughput.py
