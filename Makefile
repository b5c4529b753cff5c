# gw — build, run, test. `make run` and `make test` install what is missing first (make deps).
CC      ?= cc
PKGS    := luajit libevent libevent_openssl libssl libcrypto hiredis libjwt yaml-0.1 libpcre2-8
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iruntime -Iruntime/lua
LDFLAGS += -Wl,-E
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -ldl

SRC  := $(wildcard runtime/*.c runtime/lua/*.c)
OBJ  := $(SRC:%.c=build/%.o)
CTESTS := $(patsubst spec/c/%.c,build/spec/%,$(wildcard spec/c/test_*.c))

DEB_PKGS := build-essential pkg-config git ca-certificates curl openssl python3 \
            libluajit2-5.1-dev libevent-dev libssl-dev libhiredis-dev lua-cjson lua-cjson-dev \
            libjwt-dev libyaml-dev libpcre2-dev lua-busted lua-socket lua-filesystem \
            luarocks redis-server nginx libnginx-mod-http-lua haproxy wrk prometheus \
            clang-14 libclang-rt-14-dev libfuzzer-14-dev valgrind

.PHONY: all deps build run test ctest spec bench bench-router rock fuzz fuzz-build test-asan test-valgrind lint clean check soak
all: build
build: bin/gw

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$(echo $$missing | sed 's/^/ /')"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi

bin/gw: $(OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDFLAGS) $(PKG_LIBS)

build/%.o: %.c $(wildcard runtime/*.h runtime/lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

run: deps build
	bin/gw run -c examples/gateway.yaml

build/spec/test_%: spec/c/test_%.c $(filter-out build/runtime/main.o,$(OBJ))
	@mkdir -p build/spec
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# Every suite; the last line is "N passed, N failed" summed over all of them: C tests, busted
# specs, a 30 s smoke of each fuzz target, and the busted specs again on the ASan+UBSan build.
test: deps build $(CTESTS) fuzz-build bin/gw-asan
	@FUZZ_SECS=$(or $(FUZZ_SMOKE_SECS),30) bash spec/run-all.sh $(CTESTS)

bench: deps build
	bash bench/run.sh

# Five minutes of mixed load with reloads (SOAK_SECS to change): memory and descriptors flat,
# no unexpected errors. Not part of `make test`; results in bench/RESULTS.md.
soak: deps build
	bench/soak

clean:
	rm -rf build bin/gw build-asan bin/gw-asan

build/bench/router_bench: bench/router_bench.c $(filter-out build/runtime/main.o,$(OBJ))
	@mkdir -p build/bench
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

build/bench/parser_bench: bench/parser_bench.c build/runtime/http_parser.o
	@mkdir -p build/bench
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^

bench-router: build/bench/router_bench
	build/bench/router_bench 10000

# LuaRocks package of the Lua half (gw.* modules, spec helpers; plugins, docs, examples copied).
# luarocks wants NAME-VERSION-REV.rockspec: gateway.rockspec is copied under that name first.
ROCK_TREE ?= /usr/local
rock: build
	@mkdir -p build
	cp gateway.rockspec build/gateway-0.1.0-1.rockspec
	luarocks --lua-version 5.1 make --tree $(ROCK_TREE) build/gateway-0.1.0-1.rockspec

# ---- fuzzing, sanitizers, leak checks (docs/security.md) -----------------------------------
# libFuzzer targets, one binary per fuzz/fuzz_*.c, built with clang into build/fuzz/ against the
# runtime compiled with ASan+UBSan and coverage. `make fuzz` runs each for FUZZ_SECS seconds over
# its seed corpus fuzz/corpus/<target>/ (new inputs go to build/fuzz/corpus/<target>/, crashes to
# build/fuzz/artifacts/). spec/run-all.sh runs the same smoke with FUZZ_SECS=30 (fuzz/run.sh).
FUZZ_CC   ?= clang-14
FUZZ_SECS ?= 60
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Iruntime -Iruntime/lua $(SAN_FLAGS)
FUZZ_TARGETS := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(filter-out runtime/main.c,$(SRC)))

build/fuzz/obj/%.o: %.c $(wildcard runtime/*.h runtime/lua/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c -o $@ $<

build/fuzz/libgw.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h build/fuzz/libgw.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DGW_SRC_HOME='"$(CURDIR)"' $(PKG_CFLAGS) -o $@ $< \
	  build/fuzz/libgw.a $(LDFLAGS) $(PKG_LIBS)

fuzz-build: $(FUZZ_TARGETS)

fuzz: deps fuzz-build
	@FUZZ_SECS=$(FUZZ_SECS) bash fuzz/run.sh $(FUZZ_TARGETS)

# gw built with ASan+UBSan (own objects and binary: bin/gw stays as it is), and the whole suite
# run with it (GW_BIN). Any sanitizer report fails the run: reports go to files under
# build-asan/reports/ (the workers are separate processes), and run-all.sh counts them.
ASAN_CC ?= clang-14
ASAN_OBJ := $(SRC:%.c=build-asan/%.o)
ASAN_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Iruntime -Iruntime/lua $(SAN_FLAGS)

build-asan/%.o: %.c $(wildcard runtime/*.h runtime/lua/*.h)
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

bin/gw-asan: $(ASAN_OBJ)
	@mkdir -p bin
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $(ASAN_OBJ) $(LDFLAGS) $(PKG_LIBS)

test-asan: deps bin/gw-asan
	@GW_SUITES=asan bash spec/run-all.sh

# Valgrind memcheck on every gw process (workers too) of the integration specs; a definite leak
# or a memory error is an error (exit 99). Slow: not part of `make test`.
test-valgrind: deps build
	@bash spec/valgrind.sh
