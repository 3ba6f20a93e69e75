/* fuzz_http1.c — libFuzzer target for HTTP/1.1 heads and bodies on the
 * client port (grpc_http1_recv): any bytes, fed in chunks of the size byte 0
 * names (0 = all at once), must be answered or refused, never crash, leak or
 * read past what was received. The handler echoes the request's parts the
 * way /health, /version and /metrics read them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/grpc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static int send_cb(void *ud, const uint8_t *p, size_t len)
{
	if (len)
		sink += p[0] + p[len - 1];
	return 0;
}

static void handler(void *ud, const grpc_http1_request *req, grpc_http1_response *resp)
{
	size_t n = strlen(req->method) + strlen(req->path) + strlen(req->host);
	for (size_t i = 0; i < req->body_len; i++)
		sink += req->body[i];
	resp->status = req->body_len ? 405 : 200;
	resp->content_type = "text/plain";
	resp->body = ms_malloc(n + 1);
	if (resp->body) {
		memset(resp->body, 'x', n + 1);
		resp->body_len = n + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = data[0] ? data[0] : size;
	data++;
	size--;
	grpc_server_opts o = {0};
	o.http1 = handler;
	grpc_http1 *h;
	if (grpc_http1_new(&o, send_cb, NULL, &h))
		return 0;
	int rc = 0;
	for (size_t off = 0; rc == 0 && off < size && !grpc_http1_want_close(h); off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		uint8_t *p = malloc(n);
		memcpy(p, data + off, n);
		rc = grpc_http1_recv(h, p, n);
		free(p);
	}
	grpc_http1_free(h);
	return 0;
}
