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

demo: policies ## run the gateway on the embedded reference world (ledger in ./demo-data, kept between runs)
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
.PHONY: bench bench-smoke bench-growth

bench: policies ## measure hello-world, native and wasm gateway (closed loop, open loop at half max); writes bench/out
	$(GO) run ./cmd/medbench run -out bench/out

bench-smoke: policies ## a seconds-long bench run that fails only if the harness breaks
	$(GO) run ./cmd/medbench run -smoke -out bench/out/smoke

# --- faults: kill loop, crash simulation, fuzzing (README "Faults and guarantees") ---
.PHONY: crash crash-short fuzz fuzz-short

CRASH_CYCLES ?= 100
CRASH_ROUNDS ?= 50
FUZZ_TIME ?= 10s
FUZZERS := ./gateway:FuzzDecodeSettle ./gateway:FuzzDecodeReversal ./ledger:FuzzEntryCodec \
	./engine/abi:FuzzInput ./engine/abi:FuzzOutput ./engine/meter:FuzzInstrument ./engine/meter:FuzzInstrumentValid

crash-short: policies ## kill -9 loop against the real binary (10 cycles) and a graceful SIGTERM under load (CI)
	MEDGATE_CRASH_CYCLES=10 $(GO) test ./gateway/killtest -count=1 -v -timeout 30m

crash: policies ## the long runs: kill loop (CRASH_CYCLES=100) and in-process crashes (CRASH_ROUNDS=50); MEDGATE_CRASH_SEED=N replays a run
	MEDGATE_CRASH_CYCLES=$(CRASH_CYCLES) $(GO) test ./gateway/killtest -count=1 -v -timeout 4h
	MEDGATE_CRASH_ROUNDS=$(CRASH_ROUNDS) $(GO) test ./gateway -run '^TestCrashSimulation$$' -count=1 -v -timeout 1h

fuzz-short: ## run every fuzzer for FUZZ_TIME (10s each, CI); a crasher lands in the package's testdata/fuzz
	@FUZZ_TIME=$(FUZZ_TIME) GO=$(GO) bash .ci/fuzz.sh $(FUZZERS)

fuzz: ## every fuzzer for 5 minutes
	$(MAKE) fuzz-short FUZZ_TIME=5m

bench-growth: policies ## throughput on a ledger pre-filled with ENTRIES (default 50M; ~1.1 KB each, WORK=dir on a big disk; a WORK already prefilled is measured again) against an empty one; STEPS="10000000 20000000 ..." draws a curve
	bash bench/growth.sh
