# `make run`: set everything up and run the main job on the local real stack: the consumer
# with the example handlers, and a few writes (handlers/demo.py) to show them react.
# `make test`: lint, type-check, build the documentation strictly and run every test against
# the real stack.
VENV ?= .venv
BIN := $(VENV)/bin
CDC := $(BIN)/cdc

.PHONY: run test docs reliability bench setup system-deps stack-up stack-down stack-status lint psql clean deploy-files

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip uninstall --quiet --yes cdc 2>/dev/null || true  # the distribution's old name
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# What the stack and the tests run that pip does not bring: Java 17, Maven, PostgreSQL 15,
# a compose implementation to validate docker-compose.yml, promtool to check and test the
# alerting rules, and chromium with its chromedriver for the console's browser tests
# (Debian's packages).
PG_BIN ?= $(or $(CDC_PG_BIN),/usr/lib/postgresql/15/bin)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	[ -x "$(PG_BIN)/postgres" ] || missing="$$missing postgresql-15"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

setup: $(VENV)/.installed system-deps
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
	$(BIN)/mkdocs build --strict --site-dir .cdc/site
	$(BIN)/pytest

# The documentation site (docs/, mkdocs.yml), served with live reload on 127.0.0.1:8000.
docs: $(VENV)/.installed
	$(BIN)/mkdocs serve

# The reliability suite at full size (20 SIGKILLs over 100k changes, each component crashed
# and restarted, 10 minutes of load, the drills on a 3-broker/2-worker cluster, ...); `make test`
# runs it short. Figures: .cdc/reliability/.
reliability: setup
	CDC_RELIABILITY=full $(BIN)/pytest -m reliability tests/reliability \
		tests/integration/test_workloads.py tests/integration/test_schedule_recurring.py
	CDC_RELIABILITY=full $(BIN)/python -m tests.reliability.report

# The benchmarks (bench/): throughput of every contender on a 1M-record backlog, then latency
# under live load, on the local stack. Figures: .cdc/bench/throughput.json and latency.json.
bench: stack-up
	export CDC_STACK_DIR="$$($(BIN)/python -c 'from cdc.settings import stack_dir; print(stack_dir())')"; \
	$(BIN)/python -m bench.throughput && $(BIN)/python -m bench.latency

psql:
	@set -a; . "$$($(BIN)/python -c 'from cdc.settings import stack_dir; print(stack_dir())')/stack.env"; \
	PGPASSWORD="$$CDC_PG_PASSWORD" psql -h "$$CDC_PG_HOST" -p "$$CDC_PG_PORT" -U "$$CDC_PG_USER" "$$CDC_PG_DATABASE"

clean: stack-down
	rm -rf $(VENV) .cdc

# docker-compose.yml (and its replicated twin deploy/compose.cluster.yml),
# deploy/kubernetes.yaml and deploy/prometheus/alerts.yml are made from the code; tests check
# they are current.
deploy-files: $(VENV)/.installed
	$(CDC) deploy compose > docker-compose.yml
	$(CDC) deploy compose --brokers 3 --connect-workers 2 > deploy/compose.cluster.yml
	$(CDC) deploy kubernetes > deploy/kubernetes.yaml
	$(CDC) deploy alerts > deploy/prometheus/alerts.yml
