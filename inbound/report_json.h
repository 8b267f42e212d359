/*
 * A parsed report (inbound/report.h) as the JSON object docs/feedback.md
 * "Reading reports" documents: what `postmux feedback parse` prints and what
 * the inbound listener keeps in inbound_reports.parsed.
 */
#ifndef PMX_INBOUND_REPORT_JSON_H
#define PMX_INBOUND_REPORT_JSON_H
#include <jansson.h>

#include "inbound/report.h"

/* A new reference, or NULL when jansson cannot allocate. */
json_t *pmx_fb_report_json(const pmx_fb_report_t *r);

#endif
