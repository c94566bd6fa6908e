# The two commands of the README, plus the benchmarks.
PYTHON ?= python
PROFILE ?= smoke

.PHONY: book test benchmarks

book:  ## execute every notebook under $(PROFILE) and render the HTML book
	$(PYTHON) -m ntkbook build --profile $(PROFILE)

test:  ## unit tests, then the end-to-end smoke book build
	$(PYTHON) -m pytest -q --durations=10

benchmarks:  ## step and kernel throughput on the active JAX device
	$(PYTHON) benchmarks/throughput.py
