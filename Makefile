# MetaStore build. `make` builds bin/metastore; `make test` installs what is
# missing, builds and runs every test. Out-of-tree builds: BUILD=dir BIN=dir.

BUILD ?= build
BIN   ?= bin
CC    ?= cc
SAN   ?=

WARN   := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wno-unused-parameter -Wno-missing-field-initializers -Wvla
ifeq ($(CI),true)
WARN   += -Werror
endif
OPT    ?= -O2
CFLAGS ?= $(OPT) -g
CFLAGS += -std=gnu11 -D_GNU_SOURCE -pthread -fno-strict-aliasing $(WARN) -I. -I$(BUILD)/gen
# EXTRA_CFLAGS: additions for experiments, e.g. -DENG_WRITE_BUFFER=8388608ul
CFLAGS += $(EXTRA_CFLAGS)
ifneq ($(SAN),)
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer
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
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c | $(PROTO_H)
	$(CC) $(CFLAGS) -w -c $< -o $@

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

deps:
	@sh tools/deps.sh

build-tests: $(UNIT_BINS)

# `make test`: every unit test binary, then the integration tests.
test: deps
	@$(MAKE) --no-print-directory all build-tests
	@sh tests/run.sh unit $(UNIT_BINS)
	@sh tests/run.sh integration

test-unit: all build-tests
	@sh tests/run.sh unit $(UNIT_BINS)

test-integration: all
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

# libFuzzer targets under tests/fuzz/ (clang), each run for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SAN=fuzzer,address,undefined OPT=-O1 build-fuzz/libmetastore.a
	@mkdir -p build-fuzz/bin
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -I. -Ibuild-fuzz/gen $$f build-fuzz/libmetastore.a $(LIBS) -o build-fuzz/bin/$$n || exit 1; \
	  mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; build-fuzz/bin/$$n -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/$$n tests/fuzz/corpus/$$n 2>&1 | tail -3 || exit 1; done

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
	rm -rf $(BUILD) $(BIN) build-asan build-ubsan build-tsan

.PHONY: bench-lease-watch all deps test test-unit test-integration build-tests run cluster asan ubsan tsan sim fuzz valgrind bench format format-check clean
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
