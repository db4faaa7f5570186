# LLM Policy Engine: one vocabulary for people, hooks and CI.
.DEFAULT_GOAL := help
UV ?= uv
# litellm (the gateway plug-in tests) fetches a price map from GitHub at import unless told
# to use its bundled copy; nothing here may leave loopback.
export LITELLM_LOCAL_MODEL_COST_MAP ?= True
PYTEST_ARGS ?=
# The other Pythons `make test-pythons` runs (3.11, the lowest, is .venv's), and its suites.
PYTHONS ?= 3.12 3.13
PYTHON_SUITES ?= packages/policy-core packages/api-http packages/api-grpc

.PHONY: help install run test test-pythons lint typecheck bench proto

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: ## Install the workspace (all packages and dev tools) into .venv
	$(UV) sync --frozen

run: install ## Run the main job on the embedded default
	LLM_POLICY_ENV=$${LLM_POLICY_ENV:-development} \
	LLM_POLICY_SEED_POLICIES=$${LLM_POLICY_SEED_POLICIES:-examples/policies} \
	$(UV) run --frozen llm-policy serve

# pytest exits 5 when it collected no test; make turns every failure into 2, so say it here.
NO_TESTS = if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

test: install ## Run every test (needs PostgreSQL and Redis for the adapter tests)
	@$(UV) run --frozen pytest $(PYTEST_ARGS); rc=$$?; $(NO_TESTS)

test-pythons: ## Run the core, HTTP and gRPC suites on Python 3.12 and 3.13 (in .venv-3.12, .venv-3.13)
	@for v in $(PYTHONS); do \
		py=$$(.ci/find-python $$v) || exit 1; \
		echo "== Python $$v ($$py): $(PYTHON_SUITES)"; \
		UV_PROJECT_ENVIRONMENT=.venv-$$v $(UV) sync --frozen --python "$$py" || exit 1; \
		UV_PROJECT_ENVIRONMENT=.venv-$$v $(UV) run --frozen --python "$$py" \
			pytest $(PYTHON_SUITES) $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -ne 0 ]; then echo "== Python $$v: failed" >&2; $(NO_TESTS); fi; \
	done

lint: install ## ruff and the import-linter architecture contracts
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports

typecheck: install ## mypy --strict over every package
	$(UV) run --frozen mypy packages/*/src

PROFILE ?= full

.PHONY: reliability

reliability: install ## Faults under load, soak, fuzzing, hostile input; PROFILE=ci is CI's shorter run (docs/reliability.md)
	$(UV) run --frozen python reliability/run.py --profile $(PROFILE)

bench: install ## Run the benchmarks and print their figures (see docs/benchmarks.md)
	$(UV) run --frozen python bench/bench_engine.py

GRPC_OUT := packages/api-grpc/src/policy_grpc/_generated
INTEROP_OUT := tests/grpc_interop

proto: install ## Regenerate the gRPC code (betterproto2 for policy_grpc, stock grpcio stubs for the interop tests)
	rm -rf $(GRPC_OUT)/google $(GRPC_OUT)/llm_policy $(INTEROP_OUT)/llm_policy
	mkdir -p $(GRPC_OUT) $(INTEROP_OUT)
	$(UV) run --frozen python -m grpc_tools.protoc -Iproto \
		--python_betterproto2_out=$(GRPC_OUT) \
		--python_betterproto2_opt=client_generation=async,server_generation=async \
		--descriptor_set_out=$(GRPC_OUT)/policy.binpb --include_imports \
		proto/llm_policy/v1/policy.proto
	$(UV) run --frozen python -m grpc_tools.protoc -Iproto \
		--python_out=$(INTEROP_OUT) --grpc_python_out=$(INTEROP_OUT) \
		proto/llm_policy/v1/policy.proto

IMAGE ?= llm-policy:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
EXTRA_CA ?=
K8S_VERSION ?= 1.31.0

.PHONY: base-image image deploy-check

base-image: ## Make the local base image llm-policy-base:bookworm with debootstrap (no registry needed)
	deploy/base-image.sh llm-policy-base:bookworm

image: ## Build the image (IMAGE, BASE_IMAGE; EXTRA_CA=file.crt trusts a proxy's CA in the builder only)
	$(if $(EXTRA_CA),cp $(EXTRA_CA) deploy/build-ca/extra.crt)
	docker build --network host -f deploy/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg REVISION=$$(git rev-parse --short HEAD) -t $(IMAGE) .

deploy-check: install ## Lint and validate deploy/ (hadolint, kubernetes-validate, promtool), then run tests/deploy
	$(UV) run --frozen hadolint deploy/Dockerfile
	set -e; out=$$(mktemp -d); for overlay in single cluster; do \
		kubectl kustomize deploy/k8s/overlays/$$overlay > $$out/$$overlay.yaml; \
		$(UV) run --frozen kubernetes-validate --strict --quiet -k $(K8S_VERSION) $$out/$$overlay.yaml; \
	done; rm -rf $$out
	promtool check rules deploy/prometheus/rules.yaml
	cd deploy/prometheus && promtool test rules rules_test.yaml
	$(UV) run --frozen pytest tests/deploy $(PYTEST_ARGS)
