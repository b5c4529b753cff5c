/* log.c — the error log: one line per message, "time [level] pid: message", to stderr or a file. */
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>
#include "gw.h"

int gw_log_level = GW_LOG_NOTICE;
static const char *level_names[] = { "error", "warn", "notice", "info", "debug" };

int gw_log_level_from_name(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void gw_log(int level, const char *fmt, ...)
{
    if (level > gw_log_level) return;
    char line[4096];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y/%m/%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - n, " [%s] %d: ", level_names[level], (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += m;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write() per line so lines from several workers never interleave. */
    ssize_t w = write(2, line, n);
    (void)w;
}

uint64_t gw_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The worker's loop reads the clock once per pass (gw_time_pass): a proxied request asks for the
 * time about ten times (its start, deadlines, upstream timings, metrics), and under load one pass
 * serves many requests. */
static int time_cached;          /* the cache is on: this process runs gw_time_pass */
static uint64_t now_us;          /* the pass's time; 0: not read yet in this pass */

void gw_time_cache(int on) { time_cached = on; now_us = 0; }
void gw_time_pass(void) { now_us = 0; }

uint64_t gw_now_us(void)
{
    if (!time_cached) return gw_clock_us();
    if (!now_us) now_us = gw_clock_us();
    return now_us;
}

uint64_t gw_now_ms(void) { return gw_now_us() / 1000; }

double gw_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}
