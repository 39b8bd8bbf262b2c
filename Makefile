# `make run`: start the platform with demo data. `make test`: run every check and the suite.
# `make fuzz`: a long schemathesis run. `make audit`: known vulnerabilities of the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint deploy-check dockerfile-check chromium anvil clean soak fuzz audit

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install anvil
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

# The sandbox chain (make run) and the chain tests run anvil, a real Ethereum node, from npm
# (@foundry-rs/anvil, pinned in package.json) installed in node_modules. Without npm, make run's
# sandbox shows USDC as unavailable with the reason, and the chain tests are skipped saying why.
anvil:
	@if [ -x node_modules/.bin/anvil ]; then :; \
	elif command -v npm >/dev/null; then npm install --no-audit --no-fund --loglevel=error; \
	else echo "NOTE: npm is missing, so the sandbox chain (anvil) is not installed: install Node.js and npm" \
		"(Debian: apt-get install npm); USDC shows as unavailable and tests/settlements is skipped"; \
	fi

test: lint dockerfile-check deploy-check chromium anvil
	$(PY) -m billing_platform.devservers test -q

# Issue 19: 30 minutes of mixed traffic (SOAK_MINUTES to change it), memory sampled each minute,
# then the ledger check and the counts (bench/soak.py; figures in docs/benchmarks.md).
SOAK_MINUTES ?= 30
soak: install
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

# A much longer schemathesis run than the one in `make test` (tests/fuzz): every /v0 operation of
# /v0/schema, FUZZ_MAX_EXAMPLES cases each, the stateful phase included, within FUZZ_MAX_TIME
# seconds; FUZZ_SEED replays a run (a new one each time by default, printed at the end).
FUZZ_MAX_EXAMPLES ?= 500
FUZZ_MAX_TIME ?= 3600
FUZZ_SEED ?= $(shell date +%s)
fuzz: install
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_MAX_TIME=$(FUZZ_MAX_TIME) FUZZ_SEED=$(FUZZ_SEED) \
	$(PY) -m billing_platform.devservers test tests/fuzz -q -rP

# Known vulnerabilities in the pinned requirements (pip-audit; kept out of `make test`, so that a
# new advisory does not turn an unchanged commit red). Each accepted one is named, with why it does
# not apply, in security/pip-audit-ignore.txt; --strict fails when a package cannot be audited
# (the vulnerability service unreachable), rather than reporting nothing found.
AUDIT_SERVICE ?= pypi
audit: install
	$(VENV)/bin/pip-audit --strict --progress-spinner off --vulnerability-service $(AUDIT_SERVICE) \
		-r requirements.txt -r requirements-dev.txt \
		$$(grep -oE '^[A-Za-z0-9-]+' security/pip-audit-ignore.txt | sed 's/^/--ignore-vuln /')

clean:
	rm -rf $(VENV) .run staticfiles node_modules
