/* gw.h — process-wide declarations shared by the C core: logging, the C view of the compiled
 * config, and the handful of globals every file needs (the worker's loop and Lua VM). */
#ifndef GW_H
#define GW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define GW_VERSION "0.1.0"

/* Log levels, ordered: a message is written when its level <= gw_log_level. */
enum { GW_LOG_ERR = 0, GW_LOG_WARN, GW_LOG_NOTICE, GW_LOG_INFO, GW_LOG_DEBUG };
extern int gw_log_level;
void gw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define gw_err(...)    gw_log(GW_LOG_ERR, __VA_ARGS__)
#define gw_warn(...)   gw_log(GW_LOG_WARN, __VA_ARGS__)
#define gw_notice(...) gw_log(GW_LOG_NOTICE, __VA_ARGS__)
#define gw_info(...)   do { if (gw_log_level >= GW_LOG_INFO) gw_log(GW_LOG_INFO, __VA_ARGS__); } while (0)
#define gw_debug(...)  do { if (gw_log_level >= GW_LOG_DEBUG) gw_log(GW_LOG_DEBUG, __VA_ARGS__); } while (0)
int gw_log_level_from_name(const char *name);

/* Monotonic time: gw_now_ms / gw_now_us are read once per pass of the worker's event loop (as
 * nginx caches its time), gw_clock_us reads the clock (for timings inside one pass, and what Lua
 * code sees: a loop waiting on a cached time would never end). */
uint64_t gw_now_ms(void);
uint64_t gw_now_us(void);
uint64_t gw_clock_us(void);
void gw_time_cache(int on);     /* on: gw_now_* are per pass; the loop calls gw_time_pass */
void gw_time_pass(void);
double gw_now(void);            /* wall clock seconds, with ms precision */

#endif
