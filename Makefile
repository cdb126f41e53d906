# One verb per step; each is the same command CI runs (see .ci/run and .github/workflows/).
.DEFAULT_GOAL := all
export NO_MKDOCS_2_WARNING := 1

.PHONY: install format lint typecheck test testcov docs build all help

install: ## Install the four packages (editable) and the dev tools from the lock file
	uv sync --frozen --all-packages

format: ## Format the code and apply safe lint fixes
	uv run --frozen ruff format . && uv run --frozen ruff check --fix .

lint: ## Lint and check formatting
	uv run --frozen ruff check . && uv run --frozen ruff format --check .

typecheck: ## pyright, strict
	uv run --frozen pyright

test: ## Every test: each package's and tests-integration
	uv run --frozen pytest

testcov: ## Tests under coverage, with a report
	uv run --frozen coverage run -m pytest && uv run --frozen coverage report

docs: ## Build the documentation site, strict
	uv run --frozen mkdocs build --strict

build: ## sdists and wheels in dist/, checked with twine
	bash scripts/build

all: lint typecheck docs test ## What CI checks

help: ## Show this help
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
