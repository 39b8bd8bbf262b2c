# `make run`: start the platform with demo data. `make test`: run every check and the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint deploy-check dockerfile-check chromium clean soak

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m billing_platform.devservers run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

dockerfile-check: install
	$(VENV)/bin/hadolint Dockerfile

# Production settings must pass Django's deployment checklist.
deploy-check: install
	DEBUG=false SECRET_KEY=deploy-check-$$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	ALLOWED_HOSTS=billing.example.com DATABASE_URL=postgres://postgres@127.0.0.1:5432/unused \
	$(PY) manage.py check --deploy --fail-level WARNING

# The portal's browser tests drive Debian's chromium (never `playwright install`): installed with
# apt-get when missing and this runs as root; otherwise say how, and those tests are skipped.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium for the portal's browser tests (apt-get)"; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else \
		echo "NOTE: $(CHROMIUM) is missing, so tests/portal/test_browser.py is skipped: install it with" \
			"'sudo apt-get install chromium' (Debian/Ubuntu)"; \
	fi

test: lint dockerfile-check deploy-check chromium
	$(PY) -m billing_platform.devservers test -q

# Issue 19: 30 minutes of mixed traffic (SOAK_MINUTES to change it), memory sampled each minute,
# then the ledger check and the counts (bench/soak.py; figures in docs/benchmarks.md).
SOAK_MINUTES ?= 30
soak: install
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .run staticfiles
