# `make run`: start the platform with demo data. `make test`: run every check and the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint deploy-check dockerfile-check clean

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

test: lint dockerfile-check deploy-check
	$(PY) -m billing_platform.devservers test -q

clean:
	rm -rf $(VENV) .run staticfiles
