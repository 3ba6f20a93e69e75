# MetaStore build. `make` builds bin/metastore; `make test` installs what is
# missing, builds and runs every test. Out-of-tree builds: BUILD=dir BIN=dir.

BUILD ?= build
BIN   ?= bin
CC    ?= cc
SAN   ?=
# plain `make` builds the binaries (the first rule below is a library)
.DEFAULT_GOAL := all

WARN   := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wno-unused-parameter -Wno-missing-field-initializers -Wvla
ifeq ($(CI),true)
WARN   += -Werror
endif
OPT    ?= -O2
# CFLAGS (from the environment or the command line) are added to the
# project's flags, never in place of them: -O2 -g and the include paths stay.
# EXTRA_CFLAGS: the same, for experiments, e.g. -DENG_WRITE_BUFFER=8388608ul
MS_CFLAGS := $(OPT) -g -std=gnu11 -D_GNU_SOURCE -pthread -fno-strict-aliasing $(WARN) -I. -I$(BUILD)/gen \
             $(CFLAGS) $(EXTRA_CFLAGS)
ifneq ($(SAN),)
MS_CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif
LIBS   := -lrocksdb -lprotobuf-c -lnghttp2 -levent_openssl -levent_pthreads -levent \
          -lck -lhttp_parser -lyaml -lssl -lcrypto -lz -lpthread -lm

# ---- generated protobuf code (never committed) ----
PROTOS    := $(wildcard proto/*.proto)
PROTO_C   := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PROTO_H   := $(PROTO_C:.c=.h)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c -Iproto --c_out=$(BUILD)/gen $<

# ---- the library every binary and test links: all modules but main ----
MODULES := common engine api raft lease watch server
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(PROTO_C:.c=.o)
LIB     := $(BUILD)/libmetastore.a

$(BUILD)/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(MS_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c | $(PROTO_H)
	$(CC) $(MS_CFLAGS) -w -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# ---- binaries ----
CMD_OBJ     := $(patsubst %.c,$(BUILD)/%.o,$(wildcard cmd/*.c))
MIGRATE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/migrate/*.c))
BENCH_SRC   := $(filter-out bench/metastore_bench.c,$(wildcard bench/*.c))
BENCH_BINS  := $(patsubst bench/%.c,$(BIN)/%,$(BENCH_SRC))
LOADGEN     := $(if $(wildcard bench/metastore_bench.c),$(BIN)/metastore-bench)

all: $(BIN)/metastore $(if $(MIGRATE_OBJ),$(BIN)/metastore-migrate) $(LOADGEN)

$(BIN)/metastore: $(CMD_OBJ) $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(LIB) $(LIBS)

$(BIN)/metastore-migrate: $(MIGRATE_OBJ) $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $(MIGRATE_OBJ) $(LIB) $(LIBS)

$(BIN)/metastore-bench: $(BUILD)/bench/metastore_bench.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

$(BIN)/%: $(BUILD)/bench/%.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

# ---- unit tests: tests/unit/test_*.c, one binary each, cmocka ----
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS) -lcmocka

# tools the integration tests use (never installed with the server)
TEST_TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

deps:
	@sh tools/deps.sh

build-tests: $(UNIT_BINS) $(TEST_TOOLS) $(BUILD)/tests/gen_seeds

# `make test`: every unit test binary, then the integration tests.
test: deps
	@$(MAKE) --no-print-directory all build-tests
	@sh tests/run.sh unit $(UNIT_BINS)
	@$(MAKE) --no-print-directory fuzz-test
	@sh tests/run.sh integration

test-unit: all build-tests
	@sh tests/run.sh unit $(UNIT_BINS)

test-integration: all $(TEST_TOOLS)
	@sh tests/run.sh integration

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	./$(BIN)/metastore --name default --data-dir data/default.metastore \
	  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	  --initial-cluster default=http://127.0.0.1:2380

# Watch fan-out and lease loads, MetaStore vs etcd 3.4 (WATCHERS=, LEASES=).
bench-lease-watch: deps
	@$(MAKE) --no-print-directory all
	@bash bench/bench_lease_watch.sh

# etcd 3.4's own e2e suite with bin/metastore as `etcd` (not part of `make
# test`: it takes long). REF=1: the same tests with etcd 3.4; ONLY=<regexp>,
# JOBS=<n>, E2E_TIMEOUT=<s>. Results in $(BUILD)/e2e/results[-ref].txt.
e2e-etcd: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tools/e2e/run.sh

# A local three-member cluster in the foreground (Ctrl-C stops it).
cluster: deps
	@$(MAKE) --no-print-directory all
	@bash tools/cluster.sh

# ---- developer targets ----
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin SAN=address,undefined OPT=-O1 test-unit

ubsan: deps
	@$(MAKE) --no-print-directory BUILD=build-ubsan BIN=build-ubsan/bin SAN=undefined OPT=-O1 test-unit

# RocksDB is not instrumented: its internal synchronisation is invisible to
# TSan, so reports inside librocksdb are suppressed (tests/tsan.supp).
tsan: deps
	@TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp" \
	  $(MAKE) --no-print-directory BUILD=build-tsan BIN=build-tsan/bin SAN=thread OPT=-O1 test-unit

# Long raft simulation: tens of thousands of seeded runs (SIM_SEEDS=N to change).
SIM_SEEDS ?= 20000
sim: deps
	@$(MAKE) --no-print-directory $(BUILD)/tests/test_raft_sim
	SIM_SEEDS=$(SIM_SEEDS) $(BUILD)/tests/test_raft_sim

# libFuzzer targets under tests/fuzz/fuzz_*.c (clang; libFuzzer comes with
# libclang-rt-dev, installed by tools/deps.sh). `make fuzz FUZZ_S=N` runs each
# for N seconds from the committed seeds (tests/fuzz/corpus/<target>/, new
# inputs go to build-fuzz/corpus/<target>/) and FAILS on a crash, a leak, a
# timeout (FUZZ_TIMEOUT s per input) or an out-of-memory; the reproducer is
# left in build-fuzz/artifacts/. `make test` runs each for FUZZ_TEST_S.
# `make fuzz-seeds` regenerates the committed seeds (tests/fuzz/gen_seeds.c).
FUZZ_S       ?= $(or $(FUZZ_SECONDS),60)
FUZZ_TEST_S  ?= 3
FUZZ_TIMEOUT ?= 10
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,build-fuzz/bin/%,$(FUZZ_SRC))
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_SAN := fuzzer-no-link,address,undefined

# The instrumented library is built by a sub-make (its own BUILD dir); the
# targets link against it from this one, where it has no rule of its own.
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz BIN=build-fuzz/bin CC=clang SAN=$(FUZZ_LIB_SAN) OPT=-O1 \
	  EXTRA_CFLAGS=-fno-sanitize-recover=undefined CI= build-fuzz/libmetastore.a
	@$(MAKE) --no-print-directory -s $(FUZZ_BINS)

build-fuzz/bin/%: tests/fuzz/%.c tests/fuzz/fuzz_types.h build-fuzz/libmetastore.a
	@mkdir -p build-fuzz/bin
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 $(FUZZ_SAN) -I. -Ibuild-fuzz/gen -MMD -MP -MF $@.d $< \
	  build-fuzz/libmetastore.a $(LIBS) -o $@

-include $(wildcard build-fuzz/bin/*.d)

# run-fuzz SECONDS: each target in turn; the first failure stops the loop.
define run-fuzz
	@mkdir -p build-fuzz/artifacts build-fuzz/logs
	@for b in $(FUZZ_BINS); do n=$$(basename $$b); mkdir -p build-fuzz/corpus/$$n tests/fuzz/corpus/$$n; \
	  printf '== fuzz %s (%ss): ' $$n $(1); \
	  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$b -max_total_time=$(1) -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=2048 -print_final_stats=1 \
	       -artifact_prefix=build-fuzz/artifacts/$$n- build-fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	       >build-fuzz/logs/$$n.log 2>&1; then \
	    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' build-fuzz/logs/$$n.log | tail -1; \
	  else echo FAILED; tail -40 build-fuzz/logs/$$n.log; echo "fuzz: $$n failed (log build-fuzz/logs/$$n.log)"; exit 1; fi; \
	done; echo "fuzz: $(words $(FUZZ_BINS)) targets passed"
endef

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	$(call run-fuzz,$(FUZZ_S))

fuzz-test: fuzz-build
	$(call run-fuzz,$(FUZZ_TEST_S))

$(BUILD)/tests/gen_seeds: tests/fuzz/gen_seeds.c tests/fuzz/fuzz_types.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(MS_CFLAGS) -o $@ $< $(LIB) $(LIBS)

fuzz-seeds: $(BUILD)/tests/gen_seeds
	$(BUILD)/tests/gen_seeds tests/fuzz/corpus

# smaller sizes for the heavy tests: valgrind is ~30x slower
valgrind: all build-tests
	@VALGRIND=1 SIM_SEEDS=20 LEASE_TEST_N=20000 WATCH_TEST_N=5000 sh tests/run.sh unit $(UNIT_BINS)

bench: deps
	@$(MAKE) --no-print-directory OPT=-O2 $(BENCH_BINS)
	@mkdir -p bench/results
	@for b in $(BENCH_BINS); do echo "== $$b"; ./$$b || exit 1; done
	@echo "bench: results in bench/results/; MetaStore vs etcd 3.4: sh bench/bench_compare.sh"

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf $(BUILD) $(BIN) build-asan build-ubsan build-tsan build-fuzz

.PHONY: bench-lease-watch all deps test test-unit test-integration build-tests run cluster asan ubsan tsan sim fuzz fuzz-build fuzz-test fuzz-seeds valgrind bench format format-check clean e2e-etcd
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- performance (bench/RESULTS.md) ----
# BENCH names the load here (put, range, txn, lease, watch); the scripts'
# own BENCH (the load generator's path) is set explicitly below.
PROFILE_LOAD = $(or $(filter put range txn lease watch,$(BENCH)),put)
PERF_ENV = BENCH="$(CURDIR)/$(BIN)/metastore-bench" METASTORE="$(CURDIR)/$(BIN)/metastore"

# `make profile BENCH=put`: a one-member server under that load, sampled by
# perf for ~5 s (callgrind when perf is missing); prints the hottest functions.
profile: all
	@$(PERF_ENV) bash bench/profile.sh $(PROFILE_LOAD)

# MetaStore vs etcd 3.4 with three members each; a latency PNG per load
# under bench/results/plots (gnuplot-nox is installed when missing).
bench-cluster: all
	@$(PERF_ENV) MEMBERS=3 OUT="$(CURDIR)/bench/results/compare-3.json" bash bench/bench_compare.sh
	@bash bench/bench_plot.sh bench/results/compare-3.json bench/results/plots

# A fresh compare run against bench/baseline.json: non-zero exit when a
# same-run MetaStore/etcd ratio drops >10 % (throughput) or rises >15 % (p99).
bench-check: all
	@$(PERF_ENV) bash bench/bench_check.sh bench/baseline.json

.PHONY: profile bench-cluster bench-check
