# Two commands do all the set-up: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv

# --compile-bytecode: the libraries' .pyc files are written once here. Without them every process that
# imports torch compiles its sources again wherever .pyc files cannot be written (PYTHONDONTWRITEBYTECODE,
# a read-only venv): about 10 s of CPU per `toonfactory` command and per test that starts one.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(UV) pip install --python $(PY) --compile-bytecode -c constraints.txt -e ".[dev]"
	# opencv-contrib-python (mediapipe's) and opencv-python-headless (albumentations') both install
	# the cv2 package; whichever lands last wins. The project needs contrib's modules (img_hash,
	# ximgproc), so contrib's files are laid down again, last.
	$(UV) pip install --python $(PY) --compile-bytecode -c constraints.txt --reinstall --no-deps opencv-contrib-python
	$(PY) -c "import cv2; cv2.img_hash.pHash; cv2.ximgproc.thinning"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/toonfactory run recipes/quickstart.yaml --out out/quickstart
	$(VENV)/bin/toonfactory inspect out/quickstart

test: install
	$(PY) -m pytest -q

clean:
	rm -rf out
