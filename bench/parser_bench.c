/* parser_bench.c — cost of gw's HTTP/1.1 head parser per proxied request: the request head wrk
 * sends in bench/gwbench.py and the response head of the nginx upstream (bench/peers/upstream.conf,
 * `return 200` with default_type application/json). Prints ns/parse for each; for a deterministic
 * figure run it under `valgrind --tool=callgrind` and divide the parser's inclusive instruction
 * count by the iterations (`parser_bench N` parses each head N times). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "http_parser.h"

static const char req[] =
    "GET /api/v1/users/42 HTTP/1.1\r\n"
    "Host: 127.0.0.1:38017\r\n"
    "apikey: key-500\r\n"
    "X-API-Version: 2.0\r\n"
    "\r\n";

static const char resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Sat, 28 Nov 2026 08:10:09 GMT\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 17\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    gw_header hdrs[100];
    gw_http_request r;
    gw_http_response s;
    volatile long sink = 0;
    double t0, t1, t2;

    if (iters <= 0) iters = 1;
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        int rc = gw_http_parse_request(req, sizeof req - 1, &r, hdrs, 100, NULL);
        if (rc != (int)(sizeof req - 1)) { fprintf(stderr, "request parse failed: %d\n", rc); return 1; }
        sink += r.nheaders;
    }
    t1 = now_ns();
    for (long i = 0; i < iters; i++) {
        int rc = gw_http_parse_response(resp, sizeof resp - 1, &s, hdrs, 100, 65536);
        if (rc != (int)(sizeof resp - 1)) { fprintf(stderr, "response parse failed: %d\n", rc); return 1; }
        sink += s.nheaders;
    }
    t2 = now_ns();
    printf("request:  %zu bytes, %d headers, %.1f ns/parse\n", sizeof req - 1, r.nheaders, (t1 - t0) / iters);
    printf("response: %zu bytes, %d headers, %.1f ns/parse\n", sizeof resp - 1, s.nheaders, (t2 - t1) / iters);
    return sink < 0;
}
