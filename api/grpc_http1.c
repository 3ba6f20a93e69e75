/* grpc_http1.c — HTTP/1.1 on the gRPC port (health, version, metrics, the
 * JSON gateway): requests parsed with http-parser, answered synchronously by
 * the http1 handler with Content-Length, keep-alive and etcd's CORS headers.
 * No I/O: bytes in, bytes out through the send callback. */
#include "api/grpc_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct h1_str {
	char *p;
	size_t len, cap;
} h1_str;

struct grpc_http1 {
	http_parser parser;
	grpc_server_opts opts;
	grpc_conn_send_fn send;
	void *send_ud;
	size_t max_body;
	h1_str url, field, host, body;
	size_t head_bytes;
	bool last_was_value;
	bool field_is_host;
	int err_status; /* set by a callback that refused the request */
	bool want_close;
	bool failed; /* a send failed: stop */
	int state;   /* GRPC_H1_* */
};

static int str_add(h1_str *s, const char *p, size_t n)
{
	if (s->cap - s->len < n + 1) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap - s->len < n + 1)
			cap *= 2;
		char *q = ms_realloc(s->p, cap);
		if (!q)
			return MS_ENOMEM;
		s->p = q;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = 0;
	return 0;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Request Entity Too Large";
	case 421:
		return "Misdirected Request";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Unknown";
	}
}

static void respond(grpc_http1 *h, int status, const char *ctype, const uint8_t *body, size_t len, bool close)
{
	char head[512];
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 %d %s\r\n"
	                 "Access-Control-Allow-Origin: *\r\n"
	                 "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
	                 "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
	                 "Content-Type: %s\r\n"
	                 "Content-Length: %zu\r\n"
	                 "%s\r\n",
	                 status, reason(status), ctype, len, close ? "Connection: close\r\n" : "");
	if (h->failed)
		return;
	if (h->send(h->send_ud, (const uint8_t *)head, (size_t)n) == MS_EIO ||
	    (len && h->send(h->send_ud, body, len) == MS_EIO))
		h->failed = true;
	if (close)
		h->want_close = true;
}

static int on_message_begin(http_parser *p)
{
	grpc_http1 *h = p->data;
	h->url.len = h->host.len = h->body.len = h->field.len = 0;
	h->head_bytes = 0;
	h->last_was_value = false;
	h->field_is_host = false;
	h->state = GRPC_H1_HEAD;
	return 0;
}

static int head_add(grpc_http1 *h, h1_str *s, const char *at, size_t n)
{
	h->head_bytes += n;
	if (h->head_bytes > GRPC_HTTP1_MAX_HEAD) {
		h->err_status = 431;
		return -1;
	}
	if (s && str_add(s, at, n)) {
		h->err_status = 500;
		return -1;
	}
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	grpc_http1 *h = p->data;
	return head_add(h, &h->url, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	grpc_http1 *h = p->data;
	if (h->last_was_value)
		h->field.len = 0;
	h->last_was_value = false;
	if (head_add(h, NULL, at, n))
		return -1;
	/* only the first bytes matter: is it "host"? */
	if (h->field.len < 8 && str_add(&h->field, at, MS_MIN(n, 8 - h->field.len))) {
		h->err_status = 500;
		return -1;
	}
	h->field_is_host = h->field.len == 4 && strncasecmp(h->field.p, "host", 4) == 0;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	grpc_http1 *h = p->data;
	h->last_was_value = true;
	return head_add(h, h->field_is_host ? &h->host : NULL, at, n);
}

static int on_headers_complete(http_parser *p)
{
	grpc_http1 *h = p->data;
	h->state = GRPC_H1_BODY;
	if (p->content_length != UINT64_MAX && p->content_length > h->max_body) {
		h->err_status = 413;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	grpc_http1 *h = p->data;
	if (h->body.len + n > h->max_body) {
		h->err_status = 413;
		return -1;
	}
	if (str_add(&h->body, at, n)) {
		h->err_status = 500;
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	grpc_http1 *h = p->data;
	h->state = GRPC_H1_IDLE;
	bool close = !http_should_keep_alive(p) || p->upgrade;
	const char *method = http_method_str((enum http_method)p->method);
	if (p->method == HTTP_OPTIONS) { /* CORS preflight */
		respond(h, 200, "text/plain; charset=utf-8", NULL, 0, close);
	} else if (!h->opts.http1) {
		static const char nf[] = "404 page not found\n";
		respond(h, 404, "text/plain; charset=utf-8", (const uint8_t *)nf, sizeof nf - 1, close);
	} else {
		grpc_http1_request req = {
		    .method = method,
		    .path = h->url.p ? h->url.p : "/",
		    .host = h->host.p ? h->host.p : "",
		    .body = (const uint8_t *)(h->body.p ? h->body.p : ""),
		    .body_len = h->body.len,
		};
		grpc_http1_response resp = {.status = 200};
		h->opts.http1(h->opts.http1_ud, &req, &resp);
		respond(h, resp.status ? resp.status : 200, resp.content_type ? resp.content_type : "application/json",
		        resp.body, resp.body_len, close);
		ms_free(resp.body);
	}
	if (close)
		http_parser_pause(p, 1); /* nothing after this request is read */
	return 0;
}

static const http_parser_settings h1_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int grpc_http1_new(const grpc_server_opts *opts, grpc_conn_send_fn send, void *send_ud, grpc_http1 **out)
{
	grpc_http1 *h = ms_calloc(1, sizeof *h);
	if (!h)
		return MS_ENOMEM;
	if (opts)
		h->opts = *opts;
	grpc_opts_defaults(&h->opts);
	/* gateway bodies are JSON with base64 values: room for a maximal request */
	h->max_body = h->opts.max_recv_msg * 2;
	h->send = send;
	h->send_ud = send_ud;
	http_parser_init(&h->parser, HTTP_REQUEST);
	h->parser.data = h;
	*out = h;
	return 0;
}

int grpc_http1_recv(grpc_http1 *h, const uint8_t *data, size_t len)
{
	if (h->want_close || h->failed)
		return 0; /* the connection is closing: input after the last request is dropped */
	size_t n = http_parser_execute(&h->parser, &h1_settings, (const char *)data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
	if (e == HPE_PAUSED || (e == HPE_OK && (n == len || h->parser.upgrade)))
		return h->failed ? MS_EIO : 0;
	int status = h->err_status ? h->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
	char body[128];
	int bl = snprintf(body, sizeof body, "%d %s: %s\n", status, reason(status), http_errno_name(e));
	if (h->err_status)
		bl = snprintf(body, sizeof body, "%d %s\n", status, reason(status));
	respond(h, status, "text/plain; charset=utf-8", (const uint8_t *)body, (size_t)bl, true);
	return MS_EINVAL;
}

bool grpc_http1_want_close(const grpc_http1 *h)
{
	return h->want_close || h->failed;
}

int grpc_http1_state(const grpc_http1 *h)
{
	return h->state;
}

void grpc_http1_free(grpc_http1 *h)
{
	if (!h)
		return;
	ms_free(h->url.p);
	ms_free(h->field.p);
	ms_free(h->host.p);
	ms_free(h->body.p);
	ms_free(h);
}
