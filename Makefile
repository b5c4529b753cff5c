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
            luarocks redis-server nginx libnginx-mod-http-lua haproxy wrk prometheus

.PHONY: all deps build run test ctest spec bench bench-router rock fuzz lint clean check soak
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

# Every suite; the last line is "N passed, N failed" summed over all of them.
test: deps build $(CTESTS)
	@bash spec/run-all.sh $(CTESTS)

bench: deps build
	bash bench/run.sh

# Five minutes of mixed load with reloads (SOAK_SECS to change): memory and descriptors flat,
# no unexpected errors. Not part of `make test`; results in bench/RESULTS.md.
soak: deps build
	bench/soak

clean:
	rm -rf build bin/gw

build/bench/router_bench: bench/router_bench.c $(filter-out build/runtime/main.o,$(OBJ))
	@mkdir -p build/bench
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

bench-router: build/bench/router_bench
	build/bench/router_bench 10000

# LuaRocks package of the Lua half (gw.* modules, spec helpers; plugins, docs, examples copied).
# luarocks wants NAME-VERSION-REV.rockspec: gateway.rockspec is copied under that name first.
ROCK_TREE ?= /usr/local
rock: build
	@mkdir -p build
	cp gateway.rockspec build/gateway-0.1.0-1.rockspec
	luarocks --lua-version 5.1 make --tree $(ROCK_TREE) build/gateway-0.1.0-1.rockspec
