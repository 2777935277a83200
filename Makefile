# Two commands for a fresh machine: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov pins an older boto3 than the project's: it lives in a venv of its own, never in .venv.
TOOLS_VENV  := .venv-tools
CHECKOV_VERSION := 3.3.30
TOOLS_STAMP := $(TOOLS_VENV)/.installed-checkov-$(CHECKOV_VERSION)
# Debian packages the tests drive for real: a syslog daemon, a headless browser, the shells completion is tested in.
SYSTEM_PACKAGES := rsyslog chromium fonts-dejavu-core zsh fish

.PHONY: tools demo test soak bench bench-alerts lint docs system-deps lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,beam]'
	touch $(STAMP)

# tests/test_deploy_checkov.py runs it (offline: --skip-download).
$(TOOLS_STAMP):
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# Installs rsyslogd, chromium, zsh and fish when missing (needs root, as on CI and these machines).
system-deps:
	@missing=""; \
	command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || missing="$$missing rsyslog"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-dejavu-core"; \
	command -v zsh >/dev/null 2>&1 || missing="$$missing zsh"; \
	command -v fish >/dev/null 2>&1 || missing="$$missing fish"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(PY) -m pipeline.demo

test: $(STAMP) $(TOOLS_STAMP) system-deps
	$(PY) -m pytest -n 2 -q

# Crash-and-race trials at length: kill -9 of ingest/detect/forward at random moments and racing
# ingests, local and S3 (moto) lakes; `make test` runs one trial of each. SOCLAKE_SOAK_SEED replays a run.
SOCLAKE_SOAK_TRIALS ?= 25
soak: $(STAMP)
	SOCLAKE_SOAK_TRIALS=$(SOCLAKE_SOAK_TRIALS) $(PY) -m pytest -n 2 -q -s -rA tests/test_crash_race.py

bench: $(STAMP)
	$(PY) -m benchmarks.ingest_bench
	$(PY) -m benchmarks.detect_bench

# Alerts per rule on 1M benign synthetic events (figures in docs/rules.md).
bench-alerts: $(STAMP)
	$(PY) -m benchmarks.background_alerts

lint: $(STAMP) $(TOOLS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint deploy/Dockerfile
	$(VENV)/bin/cfn-lint deploy/aws/soclake.yml
	$(TOOLS_VENV)/bin/checkov --framework cloudformation dockerfile --skip-download --compact \
	  -f deploy/aws/soclake.yml -f deploy/Dockerfile

# Refreshes constraints.txt from the newest releases pyproject.toml allows (run make test after it).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[test,beam]'
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^soclake'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-lock

docs: $(STAMP)
	$(PY) -m pipeline schema --output docs/schema.md --alert-schema schemas/alert.schema.json

clean:
	rm -rf $(VENV) $(TOOLS_VENV) demo .bench test-artifacts
