# Two commands do all the set-up: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(UV) pip install --python $(PY) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/toonfactory run recipes/quickstart.yaml --out out/quickstart
	$(VENV)/bin/toonfactory inspect out/quickstart

test: install
	$(PY) -m pytest -q

clean:
	rm -rf out
