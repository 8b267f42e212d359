/* Worker respawn backoff and the death-rate limit; see throttle.h. */
#include "daemon/backoff.h"

#include <string.h>

#define RING (PMX_THROTTLE_MAX_DEATHS + 1)

void pmx_daemon_backoff_init(pmx_daemon_backoff_t *t)
{
    memset(t, 0, sizeof *t);
}

bool pmx_daemon_backoff_death(pmx_daemon_backoff_t *t, uint64_t now_ms, bool early)
{
    t->deaths[t->next] = now_ms;
    t->next = (t->next + 1) % RING;
    if (t->ndeaths < RING) t->ndeaths++;
    t->early_streak = early ? t->early_streak + 1 : 0;

    if (t->ndeaths < RING) return false;
    /* The ring is full: its oldest entry is the (MAX+1)-th most recent death. */
    uint64_t oldest = t->deaths[t->next];
    return now_ms - oldest < PMX_THROTTLE_WINDOW_MS;
}

void pmx_daemon_backoff_ready(pmx_daemon_backoff_t *t)
{
    t->early_streak = 0;
}

uint64_t pmx_daemon_backoff_delay_ms(const pmx_daemon_backoff_t *t)
{
    if (t->early_streak <= 1) return 0;
    uint64_t d = PMX_THROTTLE_BASE_MS;
    for (int i = 2; i < t->early_streak && d < PMX_THROTTLE_CAP_MS; i++) d *= 2;
    return d < PMX_THROTTLE_CAP_MS ? d : PMX_THROTTLE_CAP_MS;
}
