# LLM Policy Engine: one vocabulary for people, hooks and CI.
.DEFAULT_GOAL := help
UV ?= uv
PYTEST_ARGS ?=

.PHONY: help install run test lint typecheck bench proto

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: ## Install the workspace (all packages and dev tools) into .venv
	$(UV) sync --frozen

run: install ## Run the main job on the embedded default
	LLM_POLICY_ENV=$${LLM_POLICY_ENV:-development} \
	LLM_POLICY_SEED_POLICIES=$${LLM_POLICY_SEED_POLICIES:-examples/policies} \
	$(UV) run --frozen llm-policy serve

test: install ## Run every test (needs PostgreSQL and Redis for the adapter tests)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: install ## ruff and the import-linter architecture contracts
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports

typecheck: install ## mypy --strict over every package
	$(UV) run --frozen mypy packages/*/src

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
