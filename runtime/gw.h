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

/* Monotonic milliseconds, cached per loop iteration by the worker. */
uint64_t gw_now_ms(void);
double gw_now(void);            /* wall clock seconds, with ms precision */

#endif
