# medgate — cross-region medical insurance settlement gateway.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go

POLICIES := 371600/v2023 371600/v2024 152500/v1 370000/v1
WASM := $(foreach p,$(POLICIES),build/policies/$(p).wasm)
GUEST_SRC := $(shell find plugins engine/abi -name '*.go' -not -name '*_test.go' 2>/dev/null)

.DEFAULT_GOAL := all

.PHONY: all help build policies test check demo run clean

all: policies build ## build the policy modules and the binary

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

policies: $(WASM) ## build the reference policy modules into build/policies/<region>/<version>.wasm

build/policies/%.wasm: $(GUEST_SRC)
	@mkdir -p $(dir $@)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@ ./plugins/regions/$*

build: policies ## build bin/medgate with the reference world and modules embedded
	@for p in $(POLICIES); do cp build/policies/$$p.wasm testdata/world/policies/$$p.wasm; done
	$(GO) build -trimpath -o bin/medgate ./cmd/medgate

demo: policies ## run the gateway on the embedded reference world (fresh ledger in ./demo-data)
	$(GO) run ./cmd/medgate serve --db demo-data

test: policies ## run every test
	$(GO) test ./...

check: ## gofmt, go vet, go mod tidy; fails on any diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

clean: ## remove build outputs
	rm -rf build bin testdata/world/policies/*/*.wasm

# --- bench (bench/, cmd/medbench) ---
.PHONY: bench bench-smoke

bench: policies ## measure hello-world, native and wasm gateway (closed loop, open loop at half max); writes bench/out
	$(GO) run ./cmd/medbench run -out bench/out

bench-smoke: policies ## a seconds-long bench run that fails only if the harness breaks
	$(GO) run ./cmd/medbench run -smoke -out bench/out/smoke
