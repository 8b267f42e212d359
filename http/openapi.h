/*
 * The OpenAPI 3.1 document of API v1 (http/openapi.json), compiled into the
 * binaries by scripts/embed-file.sh and served at GET /v1/openapi.json.
 */
#ifndef PMX_HTTP_OPENAPI_H
#define PMX_HTTP_OPENAPI_H
#include <stddef.h>

extern const char   pmx_http_openapi_json[];
extern const size_t pmx_http_openapi_json_len;

#endif
