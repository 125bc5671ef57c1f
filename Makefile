# wmproxy: one Makefile. Each subsystem lists its sources in src/<sub>/module.mk.
# Local overrides (CC, extra flags) go in an ignored config.mk.
-include config.mk

ifeq ($(origin CC),default)
CC      := gcc
endif
PYTHON  ?= /usr/bin/python3
# Only what the code uses: nghttp2, PCRE2 and zlib come back with the issues
# that use them.
PKGS    := libevent libevent_openssl libevent_pthreads openssl yaml-0.1 libpcre2-8 hiredis
LLHTTP_DIR  := /usr/share/llhttp
LLHTTP_INC  := /usr/share/include/llhttp

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes
# llhttp in strict mode: RFC 9112 parsing (CRLF, no space before ':', ...).
LLHTTP_DEFS := -DLLHTTP_STRICT_MODE=1
CFLAGS_COMMON = -std=gnu11 -g $(WARN) -Isrc -I$(LLHTTP_INC) $(LLHTTP_DEFS) $(PKG_CFLAGS) -D_GNU_SOURCE
CFLAGS_REL  := -O2
CFLAGS_ASAN := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
LDFLAGS_ASAN := -fsanitize=address,undefined

SRCS :=
include $(sort $(wildcard src/*/module.mk))
MAIN_SRC := src/main.c
LLHTTP_SRCS := $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c

B       := build
BA      := build/asan
OBJS     = $(SRCS:%.c=$(B)/obj/%.o) $(B)/obj/llhttp/api.o $(B)/obj/llhttp/http.o \
           $(B)/obj/llhttp/llhttp.o
OBJS_ASAN = $(SRCS:%.c=$(BA)/obj/%.o) $(BA)/obj/llhttp/api.o $(BA)/obj/llhttp/http.o \
           $(BA)/obj/llhttp/llhttp.o

UNIT_SRCS  := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BA)/unit/%)
TOOL_SRCS  := $(sort $(wildcard tools/*.c))
TOOL_BINS  := $(TOOL_SRCS:tools/%.c=$(B)/%)

.PHONY: all asan deps deps-test deps-bench test unit e2e toml-test bench run clean tools \
        fuzz fuzz-build fuzz-regress

all: $(B)/wmproxy tools
tools: $(TOOL_BINS)
asan: $(BA)/wmproxy

deps:
	@sh mk/deps.sh build
deps-test:
	@sh mk/deps.sh test
deps-bench:
	@sh mk/deps.sh bench

# ---- release build ----
$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_REL) -MMD -MP -c $< -o $@
$(B)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -w $(LLHTTP_DEFS) -I$(LLHTTP_INC) -c $< -o $@
$(B)/libwm.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^
$(B)/wmproxy: $(B)/obj/src/main.o $(B)/libwm.a
	$(CC) -o $@ $^ $(PKG_LIBS)
$(B)/%: tools/%.c $(B)/libwm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_REL) -o $@ $< $(B)/libwm.a $(PKG_LIBS)

# ---- sanitizer build (ASan + UBSan), used by the test suite ----
$(BA)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_ASAN) -MMD -MP -c $< -o $@
$(BA)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -w $(LLHTTP_DEFS) -fsanitize=address,undefined -I$(LLHTTP_INC) -c $< -o $@
$(BA)/libwm.a: $(OBJS_ASAN)
	@rm -f $@
	ar rcs $@ $^
$(BA)/wmproxy: $(BA)/obj/src/main.o $(BA)/libwm.a
	$(CC) $(LDFLAGS_ASAN) -o $@ $^ $(PKG_LIBS)
$(BA)/unit/%: tests/unit/%.c $(BA)/libwm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_ASAN) $(LDFLAGS_ASAN) -o $@ $< $(BA)/libwm.a \
	    $(PKG_LIBS) -lcmocka

# ---- coverage-guided fuzzers (clang libFuzzer + ASan + UBSan) ----
FUZZ_CC     ?= clang
BF          := build/fuzz
CFLAGS_FUZZ := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=undefined
FUZZ_SRCS   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=$(BF)/%)
OBJS_FUZZ    = $(SRCS:%.c=$(BF)/obj/%.o) $(BF)/obj/llhttp/api.o $(BF)/obj/llhttp/http.o \
           $(BF)/obj/llhttp/llhttp.o
FUZZ_SECONDS ?= 60

$(BF)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_COMMON) $(CFLAGS_FUZZ) -MMD -MP -c $< -o $@
$(BF)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -O1 -g -w $(LLHTTP_DEFS) $(CFLAGS_FUZZ) -I$(LLHTTP_INC) -c $< -o $@
$(BF)/libwm.a: $(OBJS_FUZZ)
	@rm -f $@
	ar rcs $@ $^
$(BF)/fuzz_%: tests/fuzz/fuzz_%.c $(BF)/libwm.a
	$(FUZZ_CC) $(CFLAGS_COMMON) $(CFLAGS_FUZZ) -fsanitize=fuzzer -o $@ $< $(BF)/libwm.a \
	    $(PKG_LIBS)

fuzz-build: $(FUZZ_BINS)
# Replay every committed corpus input and crash reproducer (part of make test).
fuzz-regress: $(FUZZ_BINS)
	@sh tests/fuzz/run.sh regress $(FUZZ_BINS)
# Explore: FUZZ_SECONDS per target; new inputs go to build/fuzz/corpus/NAME,
# crashes to build/fuzz/crash-NAME-*.
fuzz: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh explore $(FUZZ_BINS)

# ---- tests ----
test: deps-test
	$(MAKE) all asan $(UNIT_BINS) $(FUZZ_BINS)
	$(MAKE) unit toml-test fuzz-regress e2e

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

toml-test: $(B)/toml-decoder
	$(PYTHON) tests/toml/run_corpus.py --decoder $(B)/toml-decoder \
	    --corpus ../shared/toml-test/tests

e2e: $(BA)/wmproxy
	WMPROXY_BIN=$(abspath $(BA)/wmproxy) $(PYTHON) -m pytest -q -x tests/e2e $(PYTEST_ARGS)

bench: deps-bench all
	$(PYTHON) bench/bench.py --bin $(abspath $(B)/wmproxy) $(BENCH_ARGS)

run: deps all
	$(B)/wmproxy proxy -b 127.0.0.1:8090

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
