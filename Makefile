# Every entry point of the project (`make help` lists them). A fresh clone needs only
# python3 (3.10 or later: pytest 9 and amqtt 0.12 need it) and make: the first target that
# needs them creates .venv and installs the pinned packages; `make sysdeps` (run by make test)
# installs the Debian packages the tests use (openssl, Node.js, socat) when they are missing.
PY_SYS ?= python3
PY_MIN := (3, 10)
VENV   := .venv
BIN    := $(VENV)/bin
REQ    := $(shell cksum < requirements.txt | cut -d' ' -f1)
# A .venv whose python no longer runs (its interpreter was removed) or is older than PY_MIN
# (made by another python3) is made again: the stamp's name then names a file that is not there.
VENV_OK := $(shell $(BIN)/python -c 'import sys; print(int(sys.version_info >= $(PY_MIN)))' 2>/dev/null)
STAMP  := $(VENV)/.installed-$(REQ)$(if $(filter 1,$(VENV_OK)),,-remake)
FW     := $(wildcard firmware/*.py) boot.py main.py
BUILD  := build

.PHONY: all help venv test pytest mpy sim clean sysdeps lint deploy repl vboard board package

all: test

help: ## this list
	@echo "make TARGET [VAR=value ...]   (the comment above each target in the Makefile says more)"
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 16

$(STAMP): requirements.txt
	@$(PY_SYS) -c 'import sys; sys.exit(sys.version_info < $(PY_MIN))' 2>/dev/null || \
		{ echo "$(PY_SYS) is missing or older than 3.10 (pytest 9 and amqtt 0.12 need 3.10): install Python 3.10+ (Debian: apt-get install python3 python3-venv) or name one: make PY_SYS=python3.11"; exit 2; }
	@if [ -e $(VENV) ] && [ "$(VENV_OK)" != 1 ]; then \
		echo "venv: $(VENV) was made by an interpreter that is gone or older than 3.10: making it again with $(PY_SYS)"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || { echo "venv: creating $(VENV) with $$($(PY_SYS) --version)"; $(PY_SYS) -m venv $(VENV); }
	@echo "venv: installing the pinned packages of requirements.txt into $(VENV) (the first time: a minute or two)"
	@$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-*; touch $(VENV)/.installed-$(REQ)

venv: $(STAMP) ## make .venv and install the pinned packages (every target needing them does)

# (1) host tests under CPython, (2) the firmware-level tests under micropython (driven by
# pytest through host_tests/test_micropython.py), (3) every firmware file through mpy-cross.
test: $(STAMP) sysdeps lint mpy ## lint, mpy-cross, every test (CPython, micropython, the emulated Pico): about 8 min
	$(BIN)/pytest -q -rs host_tests

# Compile the firmware as a board would import it; also the cheapest MicroPython syntax check.
mpy: $(STAMP) ## compile the firmware to .mpy into build/ (a MicroPython syntax check)
	@rm -rf $(BUILD); mkdir -p $(BUILD)/firmware
	@for f in $(FW); do $(BIN)/mpy-cross -o $(BUILD)/$${f%.py}.mpy $$f || exit 1; done
	@echo "mpy-cross: compiled $(words $(FW)) files into $(BUILD)/"

sim: $(STAMP) ## the firmware end to end: virtual module + local cloud, both flows
	$(BIN)/python -m tools.harness.demo

# Benchmarks of issue #9 (receive path, memory floor, wire, time to connected, sign) under
# micropython; writes BENCHMARKS.md. Not a test: nothing here asserts a timing.
.PHONY: bench
bench: $(STAMP) ## the benchmarks (unix port and emulated Pico); writes BENCHMARKS.md
	$(BIN)/python -m tools.bench

# The long run of the receive-path fuzz of issue 19 (make test runs a short one): seeded
# streams for FUZZ_SECONDS (default 600) under micropython, then as long under CPython.
# Each failing property is printed with the seed that reproduces it and a shrunk stream.
# make fuzz FUZZ_SECONDS=60 FUZZ_SEED=7
.PHONY: fuzz
fuzz: $(STAMP) ## the long receive-path fuzz (FUZZ_SECONDS=600 FUZZ_SEED=1)
	@st=0; \
	MICROPYPATH=.:host_tests $(BIN)/micropython -X heapsize=8m host_tests/fuzzgen.py --seconds $(or $(FUZZ_SECONDS),600) --seed $(or $(FUZZ_SEED),1) || st=1; \
	$(BIN)/python host_tests/fuzzgen.py --seconds $(or $(FUZZ_SECONDS),600) --seed $(or $(FUZZ_SEED),1) || st=1; \
	exit $$st

clean: ## remove build/ and caches
	rm -rf $(BUILD) .pytest_cache

# ---------------------------------------------------------------- system packages
# Debian packages the tests need, as command:package pairs; extend with `SYSDEPS += ...`
# (e.g. mosquitto:mosquitto). Idempotent: installs only what is missing (CI runs as root on a
# fresh Debian machine; elsewhere sudo is used when there is one).
SYSDEPS += socat:socat openssl:openssl node:nodejs

sysdeps: ## install the missing Debian packages the tests use (openssl, Node.js, socat)
	@missing=""; for d in $(SYSDEPS); do command -v $${d%%:*} >/dev/null 2>&1 || missing="$$missing $${d#*:}"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$$sudo" ] && ! command -v sudo >/dev/null 2>&1; }; then \
			echo "sysdeps: missing:$$missing (the local cloud's certificates need openssl, pyright and the emulated Pico Node.js 18+): install them with your package manager"; exit 1; fi; \
		echo "sysdeps: installing$$missing"; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || \
			{ echo "sysdeps: apt-get could not install$$missing: install them by hand"; exit 1; }; \
	fi

# ---------------------------------------------------------------- lint and types
# ruff over the repo, then pyright over firmware/, boot.py and main.py once per board, with
# that board's MicroPython stubs as the whole standard library (typeshedPath) and as the
# first stop for imports (stubPath), so CPython-only APIs fail the check; --pythonpath is a
# non-interpreter so that no CPython library is searched at all. Pins live here
# because the two stubs packages install the same module names (one directory each).
STUBS_VERSION := 1.29.0.post1
STUBS_esp32   := micropython-esp32-stubs==$(STUBS_VERSION)
STUBS_rp2     := micropython-rp2-rpi-pico-stubs==$(STUBS_VERSION)
STDLIB_STUBS  := micropython-stdlib-stubs==1.29.0.post2
LINT_BOARDS   := esp32 rp2
STUBS_DIR     := $(VENV)/stubs

$(STUBS_DIR)/%/.installed-$(STUBS_VERSION): $(STAMP)
	rm -rf $(STUBS_DIR)/$*
	$(BIN)/pip install --disable-pip-version-check -q --no-compile --target $(STUBS_DIR)/$* $(STUBS_$*) $(STDLIB_STUBS)
	printf '{"extends": "../../../pyproject.toml", "stubPath": ".", "typeshedPath": "."}\n' > $(STUBS_DIR)/$*/pyrightconfig.json
	touch $@

lint: ## ruff, and pyright over the firmware with ESP32 and RP2 MicroPython stubs
lint: $(STAMP) $(foreach b,$(LINT_BOARDS),$(STUBS_DIR)/$(b)/.installed-$(STUBS_VERSION))
	$(BIN)/ruff check .
	@for b in $(LINT_BOARDS); do echo "pyright: firmware/ boot.py main.py as MicroPython ($$b stubs $(STUBS_VERSION))"; \
		PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright --pythonpath "$$(command -v false)" -p $(STUBS_DIR)/$$b/pyrightconfig.json || exit 1; done

# ---------------------------------------------------------------- a real board
# make deploy PORT=/dev/ttyUSB0 [MPREMOTE_OPTS=...] [MPY_CROSS_OPTS=-march=xtensawin] [CONFIG=config.json] [NORESET=1]
# compiles firmware/*.py to .mpy (v6.3, for MicroPython 1.23 and later), copies them and the
# bundled CA to :firmware/ (removing stale .py/.mpy there), boot.py, main.py and the config,
# then resets the board (the virtual board of make vboard: a soft reset), so main.py runs.
# PORT may be socket://127.0.0.1:N: the emulated Pico of make vboard (or ser2net).
PORT          ?=
MPREMOTE_OPTS ?=
MPY_CROSS_OPTS ?=
CONFIG        ?= config.json

deploy: $(STAMP) ## compile and copy the firmware + config to a board (PORT=/dev/ttyUSB0)
	@test -n "$(PORT)" || { echo "usage: make deploy PORT=/dev/ttyUSB0 (or COM3, a vboard tty, socket://127.0.0.1:N)"; exit 2; }
	$(BIN)/python -m tools.deploy --port "$(PORT)" --config "$(CONFIG)" --mpremote-opts "$(MPREMOTE_OPTS)" --mpy-cross-opts "$(MPY_CROSS_OPTS)" $(if $(NORESET),--no-reset)

# package.json (mpremote mip install github:OWNER/REPO) lists every firmware/*.py: rerun
# this after adding or removing a module (host_tests/test_deploy.py checks it).
package: ## regenerate package.json (mip) after adding or removing a firmware module
	$(PY_SYS) -m tools.deploy --package-json

.PHONY: ota-package
ota-package: $(STAMP) ## an over-the-air update package of this tree (VERSION=1.3.0, OTA_OPTS="--base OLD.bin"): docs/ota.md
	$(BIN)/python -m tools.ota_package $(if $(VERSION),--version $(VERSION)) $(OTA_OPTS)

repl: $(STAMP) ## the board's REPL (PORT=...)
	@test -n "$(PORT)" || { echo "usage: make repl PORT=/dev/ttyUSB0"; exit 2; }
	$(BIN)/mpremote connect $(PORT) $(MPREMOTE_OPTS) repl

# A virtual board for make deploy / make repl, ./vboard as its flash: the emulated Pico (the
# real rp2 port in an RP2040 emulator, UART1 wired to a virtual module on the local cloud)
# when the emulator kit is there (RP2EMU: tools/board/kit.py), else (or VBOARD=unix) the unix
# port on a pty. VBOARD_IMAGE=v1.26.1: the Pico image without hashlib.md5.
VBOARD       ?=
VBOARD_IMAGE ?= v1.28.0
vboard: $(STAMP) ## a virtual board for deploy/repl: the emulated Pico (VBOARD=unix: the unix port)
	$(BIN)/python -m tools.harness.vboard --flash vboard --image $(VBOARD_IMAGE) $(if $(filter unix,$(VBOARD)),--unix)

# The board tier alone (make test runs it too): the firmware deployed onto the emulated Pico
# (v1.28.0 mqtt flow, v1.26.1 http flow with the md5 fallback) against the virtual module and
# the local cloud. Skips, with one line saying what is missing, without the emulator kit.
# make board BOARD_MINUTES=10 is the long run instead (tools/board/longrun.py): 4 KB downlinks
# for that long on v1.28.0 (mqtt flow, NTP, default config), its heap figures, no MemoryError.
BOARD_MINUTES ?=
board: $(STAMP) ## the emulated Pico tier alone (BOARD_MINUTES=10: the long run)
	@RP2EMU="$(RP2EMU)" $(if $(BOARD_MINUTES),$(BIN)/python -m tools.board.longrun --minutes $(BOARD_MINUTES),$(BIN)/pytest -q -rs host_tests/test_board.py)
