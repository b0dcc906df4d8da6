# The two set-up commands: `make run` (the app) and `make test` (the suite).
# Both create .venv and install requirements.txt on their own.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

.PHONY: venv run test bench clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

run: venv
	$(PY) -m streamlit run app/launch.py \
		--server.address 127.0.0.1 --server.port 8501 --server.headless true \
		--browser.gatherUsageStats false

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/digits.py
	$(PY) bench/lp.py

clean-venv:
	rm -rf $(VENV)
