# The web app (web/): its npm packages, its bundle, and its client generated from the facade's
# OpenAPI document. Included by the top-level Makefile; every target is a one-line skip without
# Node and npm, so the Python side builds and runs without them.

WEB_DIR := web
WEB_HAS_NODE := $(shell command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && echo yes)
WEB_STAMP := $(WEB_DIR)/node_modules/.npm-ci-stamp
# What the bundle is built from: a change to any of them rebuilds web/dist.
WEB_INPUTS := $(shell find $(WEB_DIR)/src $(WEB_DIR)/public -type f 2>/dev/null) \
	$(WEB_DIR)/index.html $(WEB_DIR)/package-lock.json $(WEB_DIR)/vite.config.ts \
	$(WEB_DIR)/tsconfig.json README.md
WEB_OPENAPI := $(WEB_DIR)/src/api/openapi.json
WEB_SCHEMA := $(WEB_DIR)/src/api/schema.d.ts

.PHONY: web web-deps web-client web-client-check web-lint

ifeq ($(WEB_HAS_NODE),)

web web-deps web-client web-client-check web-lint:
	@echo "make $@: skipped, the web app needs Node >= 18 and npm (https://nodejs.org, or apt-get install nodejs npm)"

else

## web-deps: the app's npm packages, exactly as package-lock.json pins them
web-deps: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	touch $@

## web: the production bundle in web/dist, rebuilt when a source is newer
web: $(WEB_DIR)/dist/index.html

$(WEB_DIR)/dist/index.html: $(WEB_STAMP) $(WEB_INPUTS)
	cd $(WEB_DIR) && npx --no-install vite build
	touch $@

## web-client: the OpenAPI document from the protos (no running system), and its TypeScript types
web-client: install web-deps
	$(PY) tools/openapi_doc.py --write $(WEB_OPENAPI)
	cd $(WEB_DIR) && npx --no-install openapi-typescript src/api/openapi.json -o src/api/schema.d.ts

# Regenerates into a temporary folder and compares: a proto changed without `make web-client`
# fails here, as a renamed route fails tsc.
web-client-check: install web-deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) tools/openapi_doc.py --write "$$tmp/openapi.json" && \
	(cd $(WEB_DIR) && npx --no-install openapi-typescript "$$tmp/openapi.json" -o "$$tmp/schema.d.ts" >/dev/null) && \
	{ diff -u $(WEB_OPENAPI) "$$tmp/openapi.json" >/dev/null && diff -u $(WEB_SCHEMA) "$$tmp/schema.d.ts" >/dev/null; } \
	|| { echo "web/src/api is stale: run make web-client and commit it" >&2; exit 1; }

## web-lint: type-check the app (tsc --noEmit), the generated client included
web-lint: web-deps
	cd $(WEB_DIR) && npx --no-install tsc --noEmit

endif
