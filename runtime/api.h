/* api.h — where the request state machine enters Lua: phase runs, their continuations, and the
 * C functions conn.c and proxy.c call when a phase is due. */
#ifndef GW_API_H
#define GW_API_H
#include <lua.h>
#include "conn.h"

void gw_api_run_request(gw_req *r, int no_route);   /* rewrite + access, then proxy/echo/404 */
void gw_api_response_ready(gw_req *r);             /* header_filter, then send the head */
void gw_api_run_log(gw_req *r);                    /* log, then gw_req_complete */
void gw_api_body_readable(gw_req *r);              /* buffering the whole request body */
void gw_api_body_failed(gw_req *r, int status, const char *msg);
void gw_api_req_cleanup(gw_req *r);
void gw_api_resume_timer(lua_State *co, int ref);  /* a timer coroutine's wait is over */
int gw_api_ended_handler(lua_State *L, lua_State *co); /* co's error is gw._END_HANDLER */
int gw_api_run_log_aborted(gw_req *r);             /* client gone: log phase anyway; 1 = suspended */
int gw_api_wants(gw_req *r, int phase);            /* does a plugin of r's route run `phase`? */
int gw_api_wants_body_filter(gw_req *r);            /* ... body_filter, for this response? */
void gw_api_run_body_filter(gw_req *r);            /* body_filter on r->lbody, then send it */
int gw_api_init_worker(void);                      /* init_worker of every plugin of the generation */
void gw_api_timers_premature(void);                /* stopping: run pending timers, premature = true */
int gw_api_timers_suspended(void);                 /* timer callbacks suspended (gw.sleep, gw.http, gw.redis) */
void gw_wait_cancel(gw_req *r);                    /* r ends while it waits on r->wait_op */
void gw_wait_resume(gw_req *r, lua_State *co, int co_ref); /* a gw.http/gw.redis wait is over: r's
                                                             coroutine, or (r NULL) a timer's */

/* conn.c */
void gw_req_send_local(gw_req *r);
void gw_req_complete(gw_req *r);
void gw_req_build_path(gw_req *r);
void gw_req_write_head(gw_req *r, int64_t body_len, int no_body);
const char *gw_status_text(int s);
/* proxy.c: the filtered response head may go to the client */
void gw_proxy_head_filtered(gw_req *r);
/* echo.c */
void gw_echo_respond(gw_req *r);
#endif
