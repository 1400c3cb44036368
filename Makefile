# Every entry point of the project. A fresh clone needs only python3 (3.9+) and make:
# the first target that needs them creates .venv and installs the pinned packages.
PY_SYS ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
FW     := $(wildcard firmware/*.py) boot.py main.py
BUILD  := build

.PHONY: all venv test pytest mpy sim clean

all: test

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY_SYS) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# (1) host tests under CPython, (2) the firmware-level tests under micropython (driven by
# pytest through host_tests/test_micropython.py), (3) every firmware file through mpy-cross.
test: $(STAMP) mpy
	$(BIN)/pytest -q host_tests

# Compile the firmware as a board would import it; also the cheapest MicroPython syntax check.
mpy: $(STAMP)
	@rm -rf $(BUILD); mkdir -p $(BUILD)/firmware
	@for f in $(FW); do $(BIN)/mpy-cross -o $(BUILD)/$${f%.py}.mpy $$f || exit 1; done
	@echo "mpy-cross: compiled $(words $(FW)) files into $(BUILD)/"

sim: $(STAMP)
	$(BIN)/python tools/sim.py

clean:
	rm -rf $(BUILD) .pytest_cache
