/* A parsed report as JSON; see report_json.h. */
#include "inbound/report_json.h"

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *pmx_fb_report_json(const pmx_fb_report_t *r)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; i < r->nrcpts; i++) {
        const pmx_fb_rcpt_t *rc = &r->rcpts[i];
        json_array_append_new(rcpts, json_pack("{s:o, s:o, s:o, s:o, s:o, s:b}",
            "address", str_or_null(rc->address),
            "action", str_or_null(rc->action),
            "status", str_or_null(rc->status),
            "diagnostic", str_or_null(rc->diagnostic),
            "class", rc->cls == PMX_FB_CLASS_NONE ? json_null()
                                                  : json_string(pmx_fb_class_name(rc->cls)),
            "hard", rc->hard));
    }
    return json_pack("{s:s, s:o, s:o, s:{s:o, s:o, s:o}}",
        "kind", pmx_fb_kind_name(r->kind),
        "recipients", rcpts,
        "feedback_type", str_or_null(r->feedback_type),
        "original",
            "message_id", str_or_null(r->message_id),
            "ref", str_or_null(r->ref),
            "return_path", str_or_null(r->return_path));
}
