# The JavaScript SDK (js/): included from the top-level Makefile (`include js/js.mk`), or run
# alone from the repository root: `make -f js/js.mk js-test`.
#
#   js-install    npm ci in js/ (npm install when there is no lock file), from the npm registry
#   js-test       node --test in js/: a real service (.venv/bin/bridge) per test file, and the
#                 browser test in headless Chromium (skipped, saying why, without /usr/bin/chromium)
#   js-lint       tsc --noEmit over the declarations and the examples
#   (Debian's chromium for the browser test comes from the top Makefile's browser-deps)

JS_DIR ?= js
NPM ?= npm
CHROMIUM ?= /usr/bin/chromium
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: js-install js-test js-lint

js-install: $(JS_STAMP)

$(JS_STAMP): $(JS_DIR)/package.json $(wildcard $(JS_DIR)/package-lock.json)
	@command -v node >/dev/null || { echo "js: node (>= 20) is not installed" >&2; exit 1; }
	cd $(JS_DIR) && if [ -f package-lock.json ]; then $(NPM) ci --no-audit --no-fund; \
		else $(NPM) install --no-audit --no-fund; fi
	touch $@

# The tests start .venv/bin/bridge (BRIDGE_BIN overrides it): $(STAMP), when this file is
# included after the Makefile defines it, installs it first. Test files run one at a time,
# so only one service runs at once.
js-test: $(JS_STAMP) $(STAMP)
	cd $(JS_DIR) && node --test --test-concurrency=1

js-lint: $(JS_STAMP)
	cd $(JS_DIR) && ./node_modules/.bin/tsc --noEmit -p tsconfig.json
