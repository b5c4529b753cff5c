/* echo.c — the built-in echo service (`url: echo://`): answers with the request it received as
 * JSON, so a demo config works with nothing else running and plugin effects are visible at once. */
#include <stdio.h>
#include <string.h>
#include "gw.h"
#include "conn.h"
#include "api.h"

static void json_str(struct evbuffer *b, const char *s, size_t n)
{
    evbuffer_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) continue;
        if (i > start) evbuffer_add(b, s + start, i - start);
        switch (ch) {
        case '"': evbuffer_add(b, "\\\"", 2); break;
        case '\\': evbuffer_add(b, "\\\\", 2); break;
        case '\n': evbuffer_add(b, "\\n", 2); break;
        case '\r': evbuffer_add(b, "\\r", 2); break;
        case '\t': evbuffer_add(b, "\\t", 2); break;
        default: evbuffer_add_printf(b, "\\u%04x", ch); break;
        }
        start = i + 1;
    }
    if (n > start) evbuffer_add(b, s + start, n - start);
    evbuffer_add(b, "\"", 1);
}

void gw_echo_respond(gw_req *r)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) { gw_req_error(r, 500, "out of memory"); return; }
    evbuffer_add(b, "{\"method\":", 10);
    json_str(b, r->up_method.p, r->up_method.n);
    evbuffer_add(b, ",\"path\":", 8);
    json_str(b, r->up_path.p, r->up_path.n);
    evbuffer_add(b, ",\"query\":", 9);
    json_str(b, r->up_query.p, r->up_query.n);
    evbuffer_add(b, ",\"service\":", 11);
    json_str(b, r->svc->name, strlen(r->svc->name));
    evbuffer_add(b, ",\"route\":", 9);
    if (r->route && r->route->name) json_str(b, r->route->name, strlen(r->route->name));
    else evbuffer_add(b, "null", 4);
    evbuffer_add(b, ",\"headers\":{", 12);
    for (int i = 0; i < r->h.nheaders; i++) {
        char name[256];
        size_t n = r->hdrs[i].name.n < sizeof name ? r->hdrs[i].name.n : sizeof name - 1;
        for (size_t k = 0; k < n; k++) {
            char ch = r->hdrs[i].name.p[k];
            name[k] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
        }
        if (i) evbuffer_add(b, ",", 1);
        json_str(b, name, n);
        evbuffer_add(b, ":", 1);
        json_str(b, r->hdrs[i].value.p, r->hdrs[i].value.n);
    }
    evbuffer_add(b, "},\"client_ip\":", 14);
    json_str(b, r->c->peer_ip, strlen(r->c->peer_ip));
    size_t bl = r->body ? evbuffer_get_length(r->body) : 0;
    evbuffer_add(b, ",\"body\":", 8);
    json_str(b, bl ? (const char *)evbuffer_pullup(r->body, bl) : "", bl);
    evbuffer_add_printf(b, ",\"body_size\":%zu}", bl);
    size_t n = evbuffer_get_length(b);
    r->status = 200;
    gw_req_respond_local(r, 200, "application/json", (const char *)evbuffer_pullup(b, n), n);
    evbuffer_free(b);
}
