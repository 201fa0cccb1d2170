# `make run`: set everything up and run the main job on the local real stack: the consumer
# with the example handlers, and a few writes (handlers/demo.py) to show them react.
# `make test`: lint, type-check and run every test against the real stack.
VENV ?= .venv
BIN := $(VENV)/bin
CDC := $(BIN)/cdc

.PHONY: run test setup stack-up stack-down stack-status lint psql clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	$(CDC) stack fetch

stack-up: setup
	$(CDC) stack up

stack-down:
	$(CDC) stack down

stack-status:
	$(CDC) stack status

run: stack-up
	$(CDC) db init --schema handlers/schema.sql
	$(CDC) connector apply
	$(BIN)/python -m handlers.demo & trap 'kill $$! 2>/dev/null' EXIT; $(CDC) run --handlers handlers

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy cdc handlers

test: setup lint
	$(BIN)/pytest

psql:
	@set -a; . "$$($(BIN)/python -c 'from cdc.settings import stack_dir; print(stack_dir())')/stack.env"; \
	PGPASSWORD="$$CDC_PG_PASSWORD" psql -h "$$CDC_PG_HOST" -p "$$CDC_PG_PORT" -U "$$CDC_PG_USER" "$$CDC_PG_DATABASE"

clean: stack-down
	rm -rf $(VENV) .cdc
