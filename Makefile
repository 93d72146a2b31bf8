# The course's two commands: `make lab` (learn) and `make test` (verify). See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first from a pinned pair that exists for this platform; requirements.txt only
# gives ranges (Colab keeps its own builds).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# the notebook runs of `make test` keep their executed copies here (solutions/ and notebooks/), for `make site`
EXECUTED_ROOT ?= build/executed
EXECUTED ?= $(EXECUTED_ROOT)/notebooks
SITE_VENV := .venv-site
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: lab test course check release site colab-standin gpu-check sim-check browser-deps browser-test lint venv dev-venv clean-venv

$(VENV)/.course: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .  # helpers importable from tools/, tests/ and any folder
	touch $@

$(VENV)/.dev: $(VENV)/.course requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.course
dev-venv: $(VENV)/.dev

lab: $(VENV)/.course  ## create .venv, install the course requirements, open JupyterLab on notebooks/
	$(PY) -m pip install -q jupyterlab ipykernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

test: $(VENV)/.dev  ## create/update .venv with the dev requirements and run the whole suite
	$(PY) tools/course.py check
	$(VENV)/bin/ruff check .
	rm -rf $(EXECUTED_ROOT)
	MPLBACKEND=Agg XAI_EXECUTED_DIR=$(abspath $(EXECUTED_ROOT)) $(PY) -m pytest

course: $(VENV)/.dev  ## regenerate student notebooks, setup cells, badges, assignments.md, grading guide
	$(PY) tools/course.py build

check:  ## fail when anything generated from solutions/ is stale or a notebook is malformed
	$(PY) tools/course.py check

# tools/release.py needs the standard library, nbformat and the helpers package (convention.py, course.py): a light
# environment of its own, not the development one (torch and the rest are never imported by it).
RELEASE_VENV := .venv-release
$(RELEASE_VENV)/.release: pyproject.toml
	$(PYTHON) -m venv $(RELEASE_VENV)
	$(RELEASE_VENV)/bin/python -m pip install -q nbformat
	$(RELEASE_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

release: $(RELEASE_VENV)/.release  ## write the student-only copy of the course into DIR (then push DIR to helpers/course.py's slug)
	@test -n "$(DIR)" || { echo "usage: make release DIR=path/to/clone-of-the-student-repository" >&2; exit 2; }
	$(RELEASE_VENV)/bin/python tools/release.py "$(DIR)"

$(SITE_VENV)/.site: requirements-site.txt
	$(PYTHON) -m venv $(SITE_VENV)
	$(SITE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SITE_VENV)/bin/python -m pip install -q -r requirements-site.txt
	touch $@

site: $(SITE_VENV)/.site  ## the course site in build/site from executed notebooks (EXECUTED=dir; default: make test's student runs)
	$(SITE_VENV)/bin/python -m tools.course_site $(EXECUTED) --out build/site $(if $(ALLOW_SOLUTIONS),--allow-solutions,)

colab-standin: $(VENV)/.dev  ## every notebook on a stand-in of Colab (Python 3.13, tools/colab_versions.txt, cached)
	$(PY) tools/colab_standin.py $(if $(ONLY),--only $(ONLY),)

gpu-check: $(VENV)/.dev  ## on a CUDA machine: every notebook in class mode with its GPU settings; times in OUT
	$(PY) tools/time_class_mode.py --device cuda --limit 600 --out $(or $(OUT),/tmp/xai-gpu-check) $(ONLY)

sim-check: $(VENV)/.dev  ## every notebook (smoke + offline) on the simulated GPU only (XAI_DEVICE=sim), as in make test
	MPLBACKEND=Agg $(PY) -m pytest tests/test_notebooks.py -k sim tests/test_simulated_device.py

browser-deps:  ## Debian's chromium and chromium-driver for the browser test (apt-get: root or sudo)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	else \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	fi

browser-test: $(VENV)/.dev browser-deps  ## the widgets of notebooks 02 and 04 in JupyterLab in headless Chromium
	$(PY) -m pytest -m browser -s tests/test_browser_widgets.py

lint:
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV) $(RELEASE_VENV)
