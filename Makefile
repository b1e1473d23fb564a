# SegLoop: `make demo` opens the app on a bundled scan; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first and pinned: the local CPU wheel (an unpinned torch pulls GBs of CUDA).
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Qt's window needs X11 libraries pip cannot install: stop first, naming the packages
# (as root on Debian/Ubuntu: install them with apt-get, saying so).
demo: $(STAMP)
	$(PY) -m desktop_app.qt_platform_check --install-if-root
	$(VENV)/bin/segloop unet_engine/resources/samples/hippocampus_003.nii.gz --model default

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/io_bench.py
	$(PY) bench/inference_bench.py
	$(PY) bench/train_bench.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/viewer_bench.py
	$(PY) bench/edit_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
