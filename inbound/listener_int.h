/*
 * Inside the [inbound] listener (inbound/listener.h): the state its two files
 * share. listener.c runs the SMTP sessions and stores what they receive;
 * reports.c applies stored reports and runs the upkeep (docs/feedback.md
 * "Inbound SMTP"). Not for other rooms.
 */
#ifndef PMX_INBOUND_LISTENER_INT_H
#define PMX_INBOUND_LISTENER_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "inbound/classify.h"
#include "inbound/listener.h"
#include "inbound/report.h"
#include "lib/reftoken.h"
#include "smtp/listener.h"
#include "submission/budget.h"

#define PMX_INBOUND_TICK_MS 5000u   /* the return-path domains are checked this often */


/* A return-path domain of a verified domain, and its workspace. */
typedef struct {
    char *domain;    /* the return-path domain */
    char *ws;
    char *base;      /* the verified domain */
} rp_domain_t;

struct pmx_inbound {
    pmx_worker_t           *w;
    uv_loop_t              *loop;
    const pmx_config_t     *cfg;
    pmx_settings_t         *settings;
    pmx_fb_rules_t         *rules;
    pmx_smtp_listener_t    *l;               /* accepting, the sessions (smtp/listener.h) */
    uv_timer_t              upkeep;          /* every PMX_INBOUND_TICK_MS */
    uint64_t                ticks;
    bool                    upkeep_open;
    pmx_submission_budget_t mem;
    size_t                  npending;        /* Postgres requests not yet answered */
    rp_domain_t            *rp;              /* domains.return_path of verified domains */
    size_t                  nrp;
    bool                    rp_loading;
    uint64_t                rp_gen;          /* settings generation of the last load */
    uint64_t                rp_loaded_ms;
    bool                    recovering;
    bool                    stopping;
};

/* What an accepted recipient address names. */
typedef enum { RCPT_NONE = 0, RCPT_BOUNCE, RCPT_UNSUB, RCPT_FBL } rcpt_type_t;

typedef struct {
    rcpt_type_t type;
    char        msg_id[PMX_REF_MSG_ID_LEN + 1];   /* "" = names no recipient */
    unsigned    idx;
    const char *ws;                               /* fbl@: the domain's workspace (borrowed) */
} rcpt_ref_t;

/* The recipient token of tok (n octets, any case) checked for purpose; ref
 * gets what it names. */
bool pmx_inbound__token_ok(const pmx_inbound_t *in, pmx_ref_purpose_t purpose, const char *tok,
                           size_t n, rcpt_ref_t *ref);
/* Frees in once nothing of it is open or pending (and it is stopping). */
void pmx_inbound__maybe_free(pmx_inbound_t *in);

/* reports.c */
/* Applies stored report id (decimal): ref names its recipient, r is the
 * parsed report. A failure is logged; the upkeep retries. */
void pmx_inbound__apply(pmx_inbound_t *in, const char *id, const rcpt_ref_t *ref,
                        const pmx_fb_report_t *r);
/* The upkeep timer's callback (every PMX_INBOUND_TICK_MS). */
void pmx_inbound__upkeep(uv_timer_t *t);
/* Frees the return-path domain list. */
void pmx_inbound__rp_free(pmx_inbound_t *in);

#endif
