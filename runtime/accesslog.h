/* accesslog.h — the access log (accesslog.c). */
#ifndef GW_ACCESSLOG_H
#define GW_ACCESSLOG_H
struct event_base;
struct gw_req;
/* target: "off", "stdout" or a file path (absolute: the config compiler resolved it). 0 ok. */
int gw_accesslog_open(struct event_base *base, const char *target, const char *format);
void gw_accesslog_request(struct gw_req *r);   /* one line, buffered */
void gw_accesslog_flush(void);
void gw_accesslog_reopen(void);                 /* SIGUSR1 */
#endif
