# motor-rig: two commands. `make demo` runs the simulated rig; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: bench-gui demo fuzz test lint typecheck layers pytest sysdeps firmware gpu-check gpu-wheels clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "motor-rig needs Python >= 3.11; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

sysdeps:
	@bash scripts/install_sysdeps.sh

firmware: sysdeps
	@if command -v avr-gcc >/dev/null && [ -d /usr/share/arduino ] && [ -f firmware/Makefile ]; then \
		$(MAKE) -C firmware; else echo "firmware: skipped (avr toolchain or firmware/Makefile missing)"; fi

# With a display: the app on the simulated rig, a mixed-block lever session with synthetic imaging.
# Without one (ssh, CI): the same session headless, ending with the metrics table.
demo: $(STAMP) sysdeps
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		$(PY) -m gui.app hardware_configs/sim.yaml --task mixed --autostart; \
	else \
		echo "make demo: no display (DISPLAY/WAYLAND_DISPLAY unset): running 'rig demo --headless'"; \
		$(VENV)/bin/rig demo --headless; \
	fi

bench-gui: $(STAMP)
	mkdir -p bench_results && QT_QPA_PLATFORM=offscreen $(PY) -m gui.bench --duration-s 10 --json bench_results/gui.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy rig acquisition

layers: $(STAMP)
	$(VENV)/bin/lint-imports

# Without Qt's system libraries pytest-qt cannot even start: turn it off, and tests/conftest.py
# leaves the GUI tests out with a message naming the packages to install.
pytest: $(STAMP)
	@if ! QT_QPA_PLATFORM=offscreen $(PY) -c 'import PyQt6.QtWidgets' 2>/dev/null; then \
		echo "pytest: Qt's widgets cannot load here: GUI tests will be skipped"; \
		export PYTEST_ADDOPTS="-p no:pytest-qt $$PYTEST_ADDOPTS"; fi; \
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest

test: $(STAMP) sysdeps firmware lint typecheck layers pytest

# Bug hunting, not CI: the property tests with fresh random examples, FUZZ_RUNS times over.
FUZZ_RUNS ?= 10
fuzz: $(STAMP)
	for i in $$(seq $(FUZZ_RUNS)); do echo "== fuzz run $$i/$(FUZZ_RUNS)"; \
		HYPOTHESIS_PROFILE=fuzz QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q -p no:cacheprovider \
		tests/test_faults_fuzz.py tests/test_protocol.py tests/test_statemachine.py tests/test_tcp_source.py \
		|| exit 1; done

gpu-check:
	bash scripts/gpu_check.sh

gpu-wheels:
	bash scripts/fetch_gpu_wheels.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
	-$(MAKE) -C firmware clean
