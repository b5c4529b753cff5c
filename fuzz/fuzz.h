/* fuzz.h — what the libFuzzer targets in fuzz/ share: the invariant trap, an exact-size copy of
 * the input (so ASan sees any read past its end), and a gw Lua VM rooted at the source tree.
 * Build and run: `make fuzz` (docs/security.md, "Fuzzing, sanitizers and leak checks"). */
#ifndef GW_FUZZ_H
#define GW_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant broke: crash so libFuzzer saves the input. */
#define ENSURE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
                                   __builtin_trap(); } } while (0)

static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *b = malloc(size ? size : 1);
    if (size) memcpy(b, data, size);
    return b;
}

#ifdef GW_FUZZ_VM
#include "gw.h"
#include "vm.h"
/* Closed at exit, before LeakSanitizer looks: LuaJIT's own allocator is not malloc, so what only
 * Lua objects point to (a C module's buffers) would look leaked while the VM is open. */
static lua_State *fuzz_L;
static void fuzz_vm_close(void) { if (fuzz_L) lua_close(fuzz_L); fuzz_L = NULL; }

/* The Lua VM of gw (gw_vm_new): lua/ found under $GW_HOME, else the tree the target was built in. */
static inline lua_State *fuzz_vm(void)
{
    const char *home = getenv("GW_HOME");
    snprintf(gw_home, sizeof gw_home, "%s", home && *home ? home : GW_SRC_HOME);
    /* errors of rejected inputs are expected: quiet unless FUZZ_LOG sets a level (0 error .. 4 debug) */
    gw_log_level = getenv("FUZZ_LOG") ? atoi(getenv("FUZZ_LOG")) : -1;
    lua_State *L = gw_vm_new();
    if (!L) abort();
    fuzz_L = L;
    atexit(fuzz_vm_close);
    return L;
}
#endif
#endif
