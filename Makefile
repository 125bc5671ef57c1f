# wmproxy: one Makefile. Each subsystem lists its sources in src/<sub>/module.mk.
# Local overrides (CC, extra flags) go in an ignored config.mk.
-include config.mk

.DEFAULT_GOAL := all

ifeq ($(origin CC),default)
CC      := gcc
endif
PYTHON  ?= /usr/bin/python3
# Only what the code uses (zlib: gzip of static files; nghttp2: HTTP/2;
# hiredis: [cluster]).
PKGS    := libevent libevent_openssl libevent_pthreads openssl yaml-0.1 libpcre2-8 libnghttp2 zlib hiredis
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

# The dashboard page is assembled into the binary (.incbin): rebuild on change.
$(B)/obj/src/control/dashboard.o $(BA)/obj/src/control/dashboard.o: src/control/dashboard.html

UNIT_SRCS  := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BA)/unit/%)
TOOL_SRCS  := $(sort $(wildcard tools/*.c))
TOOL_BINS  := $(TOOL_SRCS:tools/%.c=$(B)/%)

.PHONY: all asan deps deps-test deps-bench test unit e2e toml-test bench run clean tools \
        fuzz fuzz-build fuzz-regress install uninstall deb

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
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
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

# make run PORT=9090 ARGS="--user a --pass b": the forward proxy on 127.0.0.1:PORT.
PORT    ?= 8090
ARGS    ?=
run: deps all
	$(B)/wmproxy proxy -b 127.0.0.1:$(PORT) $(ARGS)

# ---- install (GNU names; Debian: PREFIX=/usr sysconfdir=/etc) ----
PREFIX      ?= /usr/local
prefix      ?= $(PREFIX)
bindir      ?= $(prefix)/bin
sysconfdir  ?= $(if $(filter /usr,$(prefix)),/etc,$(prefix)/etc)
mandir      ?= $(prefix)/share/man
docdir      ?= $(prefix)/share/doc/wmproxy
unitdir     ?= $(prefix)/lib/systemd/system
DESTDIR     ?=
INSTALL     ?= install
EXAMPLES    := $(sort $(wildcard examples/*.toml examples/*.yaml)) examples/README.md
UNITS       := wmproxy.service wmproxy@.service

# INSTALL_BIN: a binary built already (the tests install theirs, never rebuilding it)
INSTALL_BIN ?= $(B)/wmproxy
install: $(INSTALL_BIN)
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man5 \
	    $(DESTDIR)$(docdir)/examples $(DESTDIR)$(unitdir) $(DESTDIR)$(sysconfdir)/wmproxy
	$(INSTALL) -m 0755 $(INSTALL_BIN) $(DESTDIR)$(bindir)/wmproxy
	$(INSTALL) -m 0644 man/wmproxy.1 $(DESTDIR)$(mandir)/man1/wmproxy.1
	$(INSTALL) -m 0644 man/wmproxy.conf.5 $(DESTDIR)$(mandir)/man5/wmproxy.conf.5
	$(INSTALL) -m 0644 $(EXAMPLES) $(DESTDIR)$(docdir)/examples/
	@set -e; for u in $(UNITS); do \
	    sed -e 's|@BINDIR@|$(bindir)|g' -e 's|@SYSCONFDIR@|$(sysconfdir)|g' \
	        dist/systemd/$$u.in > $(DESTDIR)$(unitdir)/$$u; \
	    chmod 0644 $(DESTDIR)$(unitdir)/$$u; done
	@# the configuration is the operator's: never overwritten
	@if [ ! -e $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml ]; then \
	    $(INSTALL) -m 0644 examples/wmproxy.toml $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml; \
	    echo "installed $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml"; \
	else echo "kept $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml"; fi

uninstall:
	rm -f $(DESTDIR)$(bindir)/wmproxy $(DESTDIR)$(mandir)/man1/wmproxy.1 \
	    $(DESTDIR)$(mandir)/man5/wmproxy.conf.5
	rm -f $(addprefix $(DESTDIR)$(unitdir)/,$(UNITS))
	rm -f $(addprefix $(DESTDIR)$(docdir)/examples/,$(notdir $(EXAMPLES)))
	-rmdir $(DESTDIR)$(docdir)/examples $(DESTDIR)$(docdir) 2>/dev/null
	@# an unmodified default configuration goes too; an edited one stays
	@if cmp -s examples/wmproxy.toml $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml; then \
	    rm -f $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml; \
	    rmdir $(DESTDIR)$(sysconfdir)/wmproxy 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml ]; then \
	    echo "kept $(DESTDIR)$(sysconfdir)/wmproxy/wmproxy.toml (edited)"; fi

# Debian package in build/deb/ (debian/; build-deps from Debian only).
deb:
	@sh mk/deps.sh deb
	rm -rf build/deb && mkdir -p build/deb/src
	git ls-files -z | xargs -0 cp --parents -t build/deb/src
	cd build/deb/src && dpkg-buildpackage -us -uc -b
	lintian --fail-on error build/deb/*.changes
	@ls -l build/deb/*.deb

clean:
	rm -rf build

-include $(shell find build -path build/deb -prune -o -type f -name '*.d' -print 2>/dev/null)
