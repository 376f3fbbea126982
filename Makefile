# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
HOST   ?= 127.0.0.1
PORT   ?= 8000
WORKERS ?= 2
# No client address, query string, referrer or agent in the access log (portal/accesslog.py)
ACCESS_LOG_FORMAT := '%(t)s %(p)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

.PHONY: run test install db bench-verify bench-import clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Migrate the embedded database and load the demo data once (the marker keeps it from reloading).
instance/.demo-loaded: $(VENV)/.installed
	$(FLASK) init-db
	$(FLASK) seed-authorities
	$(FLASK) demo-data
	touch $@

db: instance/.demo-loaded
	$(FLASK) init-db

# the demo accounts sign in with a password alone (production requires two factors of regulators and admins)
run: db
	REQUIRE_2FA=0 $(BIN)/gunicorn --preload --workers $(WORKERS) --bind $(HOST):$(PORT) --access-logfile - \
		--access-logformat $(ACCESS_LOG_FORMAT) --logger-class portal.accesslog.RedactingLogger wsgi:app

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-verify: install
	$(BIN)/python -m bench.verify

bench-import: install
	$(BIN)/python -m bench.import_numbers

clean:
	rm -rf $(VENV) instance/registry.db* instance/bloom instance/.demo-loaded
