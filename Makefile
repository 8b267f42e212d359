# postmux — plain Makefile.
#
# Every room's .c files are picked up by wildcard, so adding a file needs no edit
# here. Everything except the two main() files goes into one static archive
# (libpmx.a); the binaries and every unit test link against it, so the linker
# only pulls in what each one uses.
#
#   make              release build in build/release  (-O2 -g)
#   make SAN=1        ASan + UBSan build in build/asan
#   make test         install missing packages, build both, run every suite
#   make demo         throwaway services; a workspace set up and mail sent through the API
#   make bench        the benchmark of tests/bench
#   make install      binaries, man pages, systemd units, example config

SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/asan
# PMX_DEBUG: broken internal invariants abort (e.g. queue/consumer_phase.c) instead of
# only being logged, so the tests, which run this build, fail on them.
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
           -DPMX_DEBUG
else
BUILD   ?= build/release
OPT     := -O2 -g
endif
# make fuzz: libpmx.a gets libFuzzer's coverage instrumentation too.
ifeq ($(FUZZ),1)
OPT     += -fsanitize=fuzzer-no-link
endif

CC      ?= cc
PKGS    := libuv libpq libssl libcrypto opendkim hiredis libsystemd jansson libcurl inih libmicrohttpd libunbound
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  += -std=c11 -Wall -Wextra -Werror $(OPT) -D_GNU_SOURCE -I. -I$(BUILD)/gen $(PKG_CFLAGS)
LDFLAGS += $(OPT)
LDLIBS  += $(PKG_LIBS) -lm

PREFIX  ?= /usr/local
DESTDIR ?=

ROOMS     := lib config daemon workers submission webhooks http inbound queue dkim smtp sql routing
MAINS     := daemon/main.c cli/main.c
# cli/dns.c (blocking lookups) also serves API v1's domain verify, off the loop.
LIB_SRCS  := $(filter-out $(MAINS),$(foreach r,$(ROOMS),$(wildcard $(r)/*.c))) cli/dns.c
CLI_SRCS  := $(filter-out cli/dns.c,$(wildcard cli/*.c))
GEN_SRCS  := $(BUILD)/gen/migrations.c $(BUILD)/gen/bounce_rules.c $(BUILD)/gen/openapi.c

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/migrations.o \
             $(BUILD)/obj/gen/bounce_rules.o $(BUILD)/obj/gen/openapi.o
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
D_OBJS    := $(BUILD)/obj/daemon/main.o

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

# Small programs the integration tests drive (e.g. an SMTP client probe).
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
# The same targets linked with a plain driver (tests/fuzz/replay.c), so `make test`
# replays their corpora with gcc under the sanitizers; no libFuzzer needed.
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz-replay/%)

.PHONY: all bins unit tools replay test demo bench install clean fuzz
all: bins unit tools replay
replay: $(REPLAY_BINS)
bins: $(BUILD)/bin/postmuxd $(BUILD)/bin/postmux
unit: $(UNIT_BINS)
tools: $(TOOL_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Migrations are compiled into the binaries so an installed `postmux migrate`
# needs no files beside it.
$(BUILD)/gen/migrations.c: $(sort $(wildcard sql/*.sql)) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-sql.sh $(sort $(wildcard sql/*.sql)) > $@.tmp && mv $@.tmp $@

# The bounce rules likewise (inbound/classify.h): a missing installed copy is
# never fatal.
$(BUILD)/gen/bounce_rules.c: inbound/bounce-rules.conf scripts/embed-rules.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-rules.sh inbound/bounce-rules.conf > $@.tmp && mv $@.tmp $@

# `postmux feedback parse` reads the installed rules when no --rules is given.
$(BUILD)/obj/cli/feedback.o $(BUILD)/obj/inbound/rules_installed.o: CFLAGS += -DPMX_SHAREDIR='"$(PREFIX)/share/postmux"'

# GET /v1/openapi.json serves the document kept in the repository.
$(BUILD)/gen/openapi.c: http/openapi.json scripts/embed-file.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-file.sh pmx_http_openapi_json http/openapi.h http/openapi.json > $@.tmp && mv $@.tmp $@

$(BUILD)/libpmx.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/postmuxd: $(D_OBJS) $(BUILD)/libpmx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/postmux: $(CLI_OBJS) $(BUILD)/libpmx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(BUILD)/libpmx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tools/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/libpmx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz-replay/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay.o $(BUILD)/libpmx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets (clang only): make fuzz builds them into build/fuzz.
fuzz:
	$(MAKE) CC=clang BUILD=build/fuzz SAN=1 FUZZ=1 bins
	@mkdir -p build/fuzz/fuzzers
	for f in $(FUZZ_SRCS); do \
	  n=$$(basename $$f .c); \
	  clang -std=c11 -g -O1 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	    $$f build/fuzz/libpmx.a -o build/fuzz/fuzzers/$$n $(LDLIBS) || exit 1; \
	done

test:
	bash tests/run.sh

demo:
	bash scripts/demo.sh

bench:
	bash tests/bench/run.sh

install: $(BUILD)/bin/postmuxd $(BUILD)/bin/postmux
	install -D -m 0755 $(BUILD)/bin/postmuxd $(DESTDIR)$(PREFIX)/sbin/postmuxd
	install -D -m 0755 $(BUILD)/bin/postmux $(DESTDIR)$(PREFIX)/bin/postmux
	install -D -m 0644 inbound/bounce-rules.conf $(DESTDIR)$(PREFIX)/share/postmux/bounce-rules.conf
	install -D -m 0644 routing/shaping.ini $(DESTDIR)$(PREFIX)/share/postmux/shaping.ini
	install -D -m 0644 man/postmux.1 $(DESTDIR)$(PREFIX)/share/man/man1/postmux.1
	install -D -m 0644 man/postmuxd.8 $(DESTDIR)$(PREFIX)/share/man/man8/postmuxd.8
	install -D -m 0644 man/postmux.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/postmux.conf.5
	install -D -m 0644 systemd/postmux.service $(DESTDIR)/etc/systemd/system/postmux.service
	install -D -m 0644 systemd/postmux.sysusers $(DESTDIR)/usr/lib/sysusers.d/postmux.conf
	install -D -m 0644 systemd/postmux.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/postmux.conf
	install -d -m 0750 $(DESTDIR)/etc/postmux
	[ -e $(DESTDIR)/etc/postmux/postmux.conf ] || \
	  install -m 0640 postmux.conf.example $(DESTDIR)/etc/postmux/postmux.conf

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
