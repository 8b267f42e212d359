/*
 * The postmuxd master loop; see supervisor.h.
 *
 * Worker bookkeeping lives in one table indexed like the scoreboard slots.
 * Every worker carries the config generation it was started with; a reload
 * bumps the generation, and reconcile() then converges on "target workers of
 * the current generation, ready, and no old ones": it starts one new worker
 * at a time while old ones remain, and stops an old one whenever that leaves
 * at least `target` ready workers, so accepting never pauses. Outside a
 * reload the same function replaces dead workers.
 *
 * Signal handlers only set flags; all signals the loop acts on are blocked
 * except inside sigsuspend(), so no flag is missed and nothing races.
 */
#include "daemon/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/listen.h"
#include "daemon/metrics_shm.h"
#include "submission/peers_shm.h"
#include "routing/sites.h"
#include "daemon/shm.h"
#include "daemon/backoff.h"
#include "lib/log.h"
#include "lib/mem.h"

/* A config and what postmuxd derives from it before forking. */
typedef struct {
    pmx_config_t cfg;
    char        *redis_pw;      /* NULL = no AUTH */
    size_t       redis_pwlen;
} daemon_conf_t;

typedef struct {
    pid_t    pid;               /* 0 = unused */
    unsigned gen;               /* config generation it runs */
    bool     ready;             /* has reported READY in its slot */
    bool     stopping;          /* SIGTERM sent: its exit is expected */
    bool     hung;              /* SIGKILLed for a stale heartbeat */
    bool     killed;            /* SIGKILLed after its stop deadline */
    uint64_t stop_deadline_ms;
} daemon_worker_t;

#define RATE_SAMPLES 11   /* messages/s over the last ~10 ticks */

typedef struct {
    char                     *path;
    daemon_conf_t             conf;
    const pmx_worker_hooks_t *hooks;
    pid_t                     pid;
    pmx_shm_t                *shm;
    pmx_metrics_shm_t        *metrics;   /* counters summed by GET /metrics */
    pmx_peers_shm_t          *peers;     /* failed AUTH per client address, all workers */
    pmx_sites_shm_t          *sites;     /* direct delivery: sessions per site, all workers */
    int                       submission_fd;
    char                     *submission_addr;
    int                       metrics_fd;
    char                     *metrics_addr;
    int                       http_fd;
    char                     *http_addr;
    int                       inbound_fd;
    char                     *inbound_addr;
    daemon_worker_t           workers[PMX_SHM_SLOTS];
    unsigned                  gen;
    pmx_daemon_backoff_t     throttle;
    uint64_t                  next_spawn_ms;
    bool                      ready_sent;
    bool                      reloading;
    bool                      draining;
    int                       exit_code;
    uint64_t                  tick_ms;
    uint64_t                  watchdog_half_ms;   /* 0 = no watchdog */
    uint64_t                  last_watchdog_ms;
    uint64_t                  rate_t[RATE_SAMPLES], rate_v[RATE_SAMPLES];
    int                       rate_n, rate_i;
    char                      status[256];
} pmx_daemon_t;

static volatile sig_atomic_t sig_child, sig_stop, sig_reload, sig_tick;

static void on_signal(int signo)
{
    switch (signo) {
    case SIGCHLD: sig_child = 1; break;
    case SIGTERM:
    case SIGINT:  sig_stop = signo; break;
    case SIGHUP:  sig_reload = 1; break;
    case SIGALRM: sig_tick = 1; break;
    default: break;
    }
}

static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGALRM };
#define NHANDLED ((int)(sizeof handled_signals / sizeof handled_signals[0]))

/* ---- config ----------------------------------------------------------- */

static bool is_set(const char *s) { return s && *s; }

static void conf_free(daemon_conf_t *c)
{
    pmx_config_free(&c->cfg);
    if (c->redis_pw) {
        pmx_wipe(c->redis_pw, c->redis_pwlen);
        free(c->redis_pw);
    }
    memset(c, 0, sizeof *c);
}

/* Everything startup needs from a config, checked before anything changes. */
static int conf_load(const char *path, daemon_conf_t *out, char *err, size_t errlen)
{
    char why[512];
    memset(out, 0, sizeof *out);
    if (pmx_config_load(path, &out->cfg, err, errlen) < 0) return -1;
    const pmx_config_t *cfg = &out->cfg;
    if (cfg->workers < 1 || cfg->workers > PMX_SHM_MAX_WORKERS) {
        snprintf(err, errlen, "%s: [daemon] workers must be between 1 and %d", path,
                 PMX_SHM_MAX_WORKERS);
        goto fail;
    }
    if (is_set(cfg->metrics_listen) &&
        pmx_daemon_listen_check(cfg->metrics_listen, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: [daemon] metrics_listen: %s", path, why);
        goto fail;
    }
    if (is_set(cfg->submission_listen) &&
        pmx_daemon_listen_check(cfg->submission_listen, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: [submission] listen: %s", path, why);
        goto fail;
    }
    if (is_set(cfg->http_listen) &&
        pmx_daemon_listen_check(cfg->http_listen, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: [http] listen: %s", path, why);
        goto fail;
    }
    if (is_set(cfg->inbound_listen) &&
        pmx_daemon_listen_check(cfg->inbound_listen, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: [inbound] listen: %s", path, why);
        goto fail;
    }
    if (is_set(cfg->redis_password_file) &&
        pmx_config_read_secret(cfg->redis_password_file, &out->redis_pw, &out->redis_pwlen,
                               why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: [redis] password_file: %s", path, why);
        goto fail;
    }
    return 0;
fail:
    conf_free(out);
    return -1;
}

int pmx_daemon_check_config(const char *path, char *err, size_t errlen)
{
    daemon_conf_t c;
    if (conf_load(path, &c, err, errlen) < 0) return -1;
    conf_free(&c);
    return 0;
}

/*
 * The listener a config asks for: the running one when the address did not
 * change, a new one otherwise (*opened), -1 when off.
 */
static int listener_for(const char *old_addr, int old_fd, const char *addr, int *fd,
                        bool *opened, char *err, size_t errlen)
{
    *opened = false;
    *fd = -1;
    if (!is_set(addr)) return 0;
    if (old_fd >= 0 && old_addr && strcmp(old_addr, addr) == 0) {
        *fd = old_fd;
        return 0;
    }
    *fd = pmx_daemon_listen_open(addr, err, errlen);
    if (*fd < 0) return -1;
    *opened = true;
    return 0;
}

/* ---- systemd ---------------------------------------------------------- */

static uint64_t count_live(const pmx_daemon_t *d)
{
    uint64_t n = 0;
    for (int i = 0; i < PMX_SHM_SLOTS; i++)
        if (d->workers[i].pid) n++;
    return n;
}

/* One throughput sample per tick; the rate spans the last RATE_SAMPLES-1 ticks. */
static void rate_sample(pmx_daemon_t *d, uint64_t now)
{
    d->rate_t[d->rate_i] = now;
    d->rate_v[d->rate_i] = pmx_shm_total_sent(d->shm);
    d->rate_i = (d->rate_i + 1) % RATE_SAMPLES;
    if (d->rate_n < RATE_SAMPLES) d->rate_n++;
}

static void update_status(pmx_daemon_t *d, uint64_t now, bool force)
{
    uint64_t sent = pmx_shm_total_sent(d->shm);
    double rate = 0;
    if (d->rate_n > 0) {
        int oldest = d->rate_n < RATE_SAMPLES ? 0 : d->rate_i;
        if (now > d->rate_t[oldest] && sent >= d->rate_v[oldest])
            rate = (double)(sent - d->rate_v[oldest]) * 1000.0 / (double)(now - d->rate_t[oldest]);
    }

    char buf[256];
    if (d->draining)
        snprintf(buf, sizeof buf, "stopping: %llu workers left, %llu sent",
                 (unsigned long long)count_live(d), (unsigned long long)sent);
    else
        snprintf(buf, sizeof buf, "%llu workers%s, %llu sent, %.1f msg/s",
                 (unsigned long long)count_live(d), d->reloading ? " (reloading)" : "",
                 (unsigned long long)sent, rate);
    if (!force && strcmp(buf, d->status) == 0) return;
    snprintf(d->status, sizeof d->status, "%s", buf);
    sd_notifyf(0, "STATUS=%s", d->status);
}

/* WATCHDOG=1 at half the interval, only while every worker's loop turns. */
static void watchdog_tick(pmx_daemon_t *d, uint64_t now)
{
    if (!d->watchdog_half_ms) return;
    if (now - d->last_watchdog_ms + d->tick_ms / 2 < d->watchdog_half_ms) return;
    for (int i = 0; i < PMX_SHM_SLOTS; i++) {
        if (!d->workers[i].pid) continue;
        uint64_t hb = pmx_shm_slot_heartbeat(&d->shm->slots[i]);
        if (now > hb && now - hb > PMX_DAEMON_FRESH_MS) {
            pmx_log_debug("watchdog ping withheld: worker pid=%d heartbeat_age_ms=%llu",
                          (int)d->workers[i].pid, (unsigned long long)(now - hb));
            return;
        }
    }
    sd_notify(0, "WATCHDOG=1");
    d->last_watchdog_ms = now;
}

/* READY=1 once the first set of workers runs with Redis and Postgres up. */
static void readiness_tick(pmx_daemon_t *d)
{
    if (d->ready_sent || d->draining) return;
    int up = 0;
    for (int i = 0; i < PMX_SHM_SLOTS; i++) {
        const daemon_worker_t *w = &d->workers[i];
        if (w->pid && w->gen == d->gen && !w->stopping &&
            pmx_shm_slot_all_up(&d->shm->slots[i]))
            up++;
    }
    if (up < d->conf.cfg.workers) return;
    d->ready_sent = true;
    pmx_log_info("ready workers=%d (Redis and Postgres answered)", up);
    sd_notify(0, "READY=1");
}

/* ---- workers ---------------------------------------------------------- */

static void worker_child(pmx_daemon_t *d, int idx) __attribute__((noreturn));
static void worker_child(pmx_daemon_t *d, int idx)
{
    /* Die with the supervisor; the getppid() check closes the race where it
     * died before prctl() took effect. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != d->pid) _exit(2);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_DFL;
    for (int i = 0; i < NHANDLED; i++) sigaction(handled_signals[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);   /* reloads are the supervisor's business */
    sigaction(SIGPIPE, &sa, NULL);
    /* Only the main process talks to systemd (NotifyAccess=main). */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");

    char tag[32];
    snprintf(tag, sizeof tag, "worker[%d]", (int)getpid());
    pmx_log_set_tag(tag);
    pmx_shm_slot_set_pid(&d->shm->slots[idx], (int32_t)getpid());
    pmx_metrics_shm_attach(d->metrics, idx);
    pmx_peers_shm_set_slot(idx);   /* its submission sessions are counted under idx */
    pmx_sites_shm_set_slot(idx);   /* ... and its sessions to MX sites */

    pmx_worker_opts_t opts = {
        .cfg = &d->conf.cfg,
        .shm = d->shm,
        .slot = idx,
        .submission_fd = d->submission_fd,
        .metrics_fd = d->metrics_fd,
        .http_fd = d->http_fd,
        .inbound_fd = d->inbound_fd,
        .redis_password = d->conf.redis_pw,
        .redis_pwlen = d->conf.redis_pwlen,
        .hooks = d->hooks,
    };
    exit(pmx_worker_run(&opts));
}

static int spawn_worker(pmx_daemon_t *d, uint64_t now)
{
    int idx = -1;
    for (int i = 0; i < PMX_SHM_SLOTS && idx < 0; i++)
        if (!d->workers[i].pid && pmx_shm_slot_state(&d->shm->slots[i]) == PMX_SLOT_FREE) idx = i;
    if (idx < 0) {
        pmx_log_error("no free worker slot");
        return -1;
    }
    pmx_slot_t *slot = &d->shm->slots[idx];
    /* Claimed before fork, so the child's own writes cannot be overwritten. */
    pmx_shm_slot_claim(slot, 0, now);
    pmx_metrics_shm_slot_reset(d->metrics, idx);
    pmx_peers_shm_slot_reset(d->peers, idx);
    pmx_sites_shm_slot_reset(d->sites, idx);
    pid_t pid = fork();
    if (pid < 0) {
        pmx_log_warn("fork failed: %s", strerror(errno));
        pmx_shm_slot_release(d->shm, slot);
        return -1;
    }
    if (pid == 0) worker_child(d, idx);
    pmx_shm_slot_set_pid(slot, (int32_t)pid);
    d->workers[idx] = (daemon_worker_t){ .pid = pid, .gen = d->gen };
    pmx_log_info("worker started pid=%d slot=%d gen=%u", (int)pid, idx, d->gen);
    return 0;
}

static void stop_worker(pmx_daemon_t *d, daemon_worker_t *w, uint64_t now)
{
    if (w->stopping) return;
    w->stopping = true;
    w->stop_deadline_ms = now + d->conf.cfg.shutdown_timeout_ms;
    if (kill(w->pid, SIGTERM) != 0 && errno != ESRCH)
        pmx_log_warn("cannot signal worker pid=%d: %s", (int)w->pid, strerror(errno));
}

static void begin_drain(pmx_daemon_t *d, int code, const char *why)
{
    if (d->draining) return;
    d->draining = true;
    d->exit_code = code;
    uint64_t now = pmx_shm_now_ms();
    pmx_log_info("stopping (%s): draining workers=%llu shutdown_timeout_ms=%llu", why,
                 (unsigned long long)count_live(d),
                 (unsigned long long)d->conf.cfg.shutdown_timeout_ms);
    sd_notify(0, "STOPPING=1");
    for (int i = 0; i < PMX_SHM_SLOTS; i++)
        if (d->workers[i].pid) stop_worker(d, &d->workers[i], now);
    update_status(d, now, true);
}

static void reap(pmx_daemon_t *d)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        int idx = -1;
        for (int i = 0; i < PMX_SHM_SLOTS && idx < 0; i++)
            if (d->workers[i].pid == pid) idx = i;
        if (idx < 0) continue;
        daemon_worker_t *w = &d->workers[idx];
        pmx_slot_t *slot = &d->shm->slots[idx];
        pmx_slot_state_t state = pmx_shm_slot_state(slot);
        bool was_ready = w->ready || state == PMX_SLOT_READY || state == PMX_SLOT_DRAINING;

        char how[48];
        if (WIFEXITED(st))
            snprintf(how, sizeof how, "status=%d", WEXITSTATUS(st));
        else
            snprintf(how, sizeof how, "signal=%d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);

        bool expected = w->stopping || d->draining;
        bool give_up = false;
        uint64_t now = pmx_shm_now_ms();
        if (expected) {
            pmx_log_info("worker exited pid=%d %s", (int)pid, how);
        } else {
            pmx_log_warn("worker died pid=%d %s%s", (int)pid, how,
                         w->hung ? " (killed: hung)" : was_ready ? "" : " (before it was ready)");
            pmx_shm_count_restart(d->shm);
            give_up = pmx_daemon_backoff_death(&d->throttle, now, !was_ready);
            uint64_t delay = pmx_daemon_backoff_delay_ms(&d->throttle);
            if (!give_up && delay) {
                d->next_spawn_ms = now + delay;
                pmx_log_warn("workers keep dying before they are ready: next start in %llu ms",
                             (unsigned long long)delay);
            }
        }
        pmx_shm_slot_release(d->shm, slot);
        pmx_metrics_shm_slot_reset(d->metrics, idx);   /* its sessions are gone */
        pmx_peers_shm_slot_reset(d->peers, idx);       /* ... and their per-address counts */
        pmx_sites_shm_slot_reset(d->sites, idx);       /* ... and their sessions to MX sites */
        memset(w, 0, sizeof *w);
        if (give_up) {
            pmx_log_error("workers died more than %d times in %u s: giving up, exiting with "
                          "status 1 (systemd restarts the unit)",
                          PMX_THROTTLE_MAX_DEATHS, PMX_THROTTLE_WINDOW_MS / 1000);
            begin_drain(d, 1, "too many worker deaths");
        }
    }
}

/* Hung workers and workers past their stop deadline get SIGKILL. */
static void check_workers(pmx_daemon_t *d, uint64_t now)
{
    for (int i = 0; i < PMX_SHM_SLOTS; i++) {
        daemon_worker_t *w = &d->workers[i];
        if (!w->pid) continue;
        uint64_t hb = pmx_shm_slot_heartbeat(&d->shm->slots[i]);
        if (!w->hung && !w->killed && now > hb && now - hb > PMX_DAEMON_HUNG_MS) {
            pmx_log_error("worker hung pid=%d heartbeat_age_ms=%llu: killing it", (int)w->pid,
                          (unsigned long long)(now - hb));
            kill(w->pid, SIGKILL);
            w->hung = true;
        }
        if (w->stopping && !w->killed && !w->hung && now >= w->stop_deadline_ms) {
            pmx_log_warn("worker pid=%d did not stop within shutdown_timeout: killing it",
                         (int)w->pid);
            kill(w->pid, SIGKILL);
            w->killed = true;
        }
    }
}

/* Starts, replaces and retires workers until the current generation is complete. */
static void reconcile(pmx_daemon_t *d, uint64_t now)
{
    if (d->draining) return;
    int target = d->conf.cfg.workers, live_new = 0, ready_new = 0, old_active = 0;
    for (int i = 0; i < PMX_SHM_SLOTS; i++) {
        daemon_worker_t *w = &d->workers[i];
        if (!w->pid || w->stopping) continue;
        if (!w->ready && pmx_shm_slot_state(&d->shm->slots[i]) == PMX_SLOT_READY) {
            w->ready = true;
            pmx_daemon_backoff_ready(&d->throttle);
        }
        if (w->gen == d->gen) {
            live_new++;
            if (w->ready) ready_new++;
        } else {
            old_active++;
        }
    }
    /* Retire old workers while enough new ones are ready to take their place. */
    while (old_active > 0 && old_active + ready_new > target) {
        daemon_worker_t *oldest = NULL;
        for (int i = 0; i < PMX_SHM_SLOTS; i++) {
            daemon_worker_t *w = &d->workers[i];
            if (w->pid && !w->stopping && w->gen != d->gen && (!oldest || w->gen < oldest->gen))
                oldest = w;
        }
        pmx_log_info("stopping old worker pid=%d gen=%u", (int)oldest->pid, oldest->gen);
        stop_worker(d, oldest, now);
        old_active--;
    }
    /* During a reload, one new worker at a time. */
    int want = target - live_new;
    if (want > 0 && old_active > 0) want = live_new == ready_new ? 1 : 0;
    if (want > 0 && now >= d->next_spawn_ms) {
        for (int i = 0; i < want; i++) {
            if (spawn_worker(d, now) < 0) {
                d->next_spawn_ms = now + 1000;
                break;
            }
        }
    }
    if (d->reloading && old_active == 0 && ready_new >= target) {
        d->reloading = false;
        pmx_log_info("reload complete workers=%d", ready_new);
        if (d->ready_sent) sd_notify(0, "READY=1");
        update_status(d, now, true);
    }
}

/* ---- SIGHUP ----------------------------------------------------------- */

static void reload(pmx_daemon_t *d)
{
    char err[1024];
    daemon_conf_t nc;
    pmx_log_info("reloading config=%s", d->path);
    if (d->ready_sent)
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                   (unsigned long long)pmx_shm_now_ms() * 1000ull);
    if (conf_load(d->path, &nc, err, sizeof err) < 0) {
        pmx_log_error("reload failed, keeping the running config: %s", err);
        if (d->ready_sent) sd_notify(0, "READY=1");
        return;
    }
    int sub_fd, met_fd, http_fd = -1, in_fd = -1;
    bool sub_new = false, met_new = false, http_new = false, in_new = false;
    char why[512];
    if (listener_for(d->submission_addr, d->submission_fd, nc.cfg.submission_listen, &sub_fd,
                     &sub_new, why, sizeof why) < 0 ||
        listener_for(d->metrics_addr, d->metrics_fd, nc.cfg.metrics_listen, &met_fd,
                     &met_new, why, sizeof why) < 0 ||
        listener_for(d->http_addr, d->http_fd, nc.cfg.http_listen, &http_fd,
                     &http_new, why, sizeof why) < 0 ||
        listener_for(d->inbound_addr, d->inbound_fd, nc.cfg.inbound_listen, &in_fd,
                     &in_new, why, sizeof why) < 0) {
        if (sub_new) close(sub_fd);
        if (met_new) close(met_fd);
        if (http_new) close(http_fd);
        pmx_log_error("reload failed, keeping the running config: %s", why);
        conf_free(&nc);
        if (d->ready_sent) sd_notify(0, "READY=1");
        return;
    }
    /* Old workers keep their own copies of replaced listeners until they exit. */
    if (d->submission_fd >= 0 && d->submission_fd != sub_fd) close(d->submission_fd);
    if (d->metrics_fd >= 0 && d->metrics_fd != met_fd) close(d->metrics_fd);
    if (d->http_fd >= 0 && d->http_fd != http_fd) close(d->http_fd);
    if (d->inbound_fd >= 0 && d->inbound_fd != in_fd) close(d->inbound_fd);
    d->inbound_fd = in_fd;
    free(d->inbound_addr);
    d->inbound_addr = in_fd >= 0 ? pmx_xstrdup(nc.cfg.inbound_listen) : NULL;
    d->submission_fd = sub_fd;
    d->metrics_fd = met_fd;
    d->http_fd = http_fd;
    free(d->submission_addr);
    free(d->metrics_addr);
    free(d->http_addr);
    d->http_addr = http_fd >= 0 ? pmx_xstrdup(nc.cfg.http_listen) : NULL;
    d->submission_addr = sub_fd >= 0 ? pmx_xstrdup(nc.cfg.submission_listen) : NULL;
    d->metrics_addr = met_fd >= 0 ? pmx_xstrdup(nc.cfg.metrics_listen) : NULL;

    conf_free(&d->conf);
    d->conf = nc;
    pmx_log_set_level(d->conf.cfg.log_level);
    d->gen++;
    d->reloading = true;
    d->next_spawn_ms = 0;
    pmx_daemon_backoff_ready(&d->throttle);
    pmx_log_info("config reloaded gen=%u workers=%d: replacing workers one at a time", d->gen,
                 d->conf.cfg.workers);
}

/* ---- the loop --------------------------------------------------------- */

static int setup_signals(pmx_daemon_t *d)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < NHANDLED; i++) sigaddset(&set, handled_signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    for (int i = 0; i < NHANDLED; i++) {
        sa.sa_flags = handled_signals[i] == SIGCHLD ? SA_NOCLDSTOP : 0;
        if (sigaction(handled_signals[i], &sa, NULL) != 0) return -1;
    }
    signal(SIGPIPE, SIG_IGN);

    struct itimerval it;
    it.it_interval.tv_sec = (time_t)(d->tick_ms / 1000);
    it.it_interval.tv_usec = (suseconds_t)(d->tick_ms % 1000) * 1000;
    it.it_value = it.it_interval;
    return setitimer(ITIMER_REAL, &it, NULL);
}

static void cleanup(pmx_daemon_t *d)
{
    if (d->submission_fd >= 0) close(d->submission_fd);
    if (d->metrics_fd >= 0) close(d->metrics_fd);
    if (d->http_fd >= 0) close(d->http_fd);
    if (d->inbound_fd >= 0) close(d->inbound_fd);
    free(d->submission_addr);
    free(d->metrics_addr);
    free(d->http_addr);
    free(d->inbound_addr);
    conf_free(&d->conf);
    pmx_shm_destroy(d->shm);
    pmx_metrics_shm_destroy(d->metrics);
    pmx_peers_shm_destroy(d->peers);
    pmx_sites_shm_destroy(d->sites);
    free(d->path);
    free(d);
}

int pmx_daemon_run(const char *path, const pmx_worker_hooks_t *hooks)
{
    char err[1024], tag[32];
    pmx_daemon_t *d = pmx_xcalloc(1, sizeof *d);
    d->pid = getpid();
    d->path = pmx_xstrdup(path);
    d->hooks = hooks;
    d->submission_fd = d->metrics_fd = d->http_fd = d->inbound_fd = -1;
    pmx_daemon_backoff_init(&d->throttle);
    snprintf(tag, sizeof tag, "postmuxd[%d]", (int)d->pid);
    pmx_log_set_tag(tag);

    if (conf_load(path, &d->conf, err, sizeof err) < 0) {
        pmx_log_error("%s", err);
        cleanup(d);
        return 1;
    }
    pmx_log_set_level(d->conf.cfg.log_level);
    bool opened;
    if (listener_for(NULL, -1, d->conf.cfg.submission_listen, &d->submission_fd, &opened,
                     err, sizeof err) < 0 ||
        listener_for(NULL, -1, d->conf.cfg.metrics_listen, &d->metrics_fd, &opened,
                     err, sizeof err) < 0 ||
        listener_for(NULL, -1, d->conf.cfg.http_listen, &d->http_fd, &opened,
                     err, sizeof err) < 0 ||
        listener_for(NULL, -1, d->conf.cfg.inbound_listen, &d->inbound_fd, &opened,
                     err, sizeof err) < 0) {
        pmx_log_error("%s", err);
        cleanup(d);
        return 1;
    }
    if (d->submission_fd >= 0) d->submission_addr = pmx_xstrdup(d->conf.cfg.submission_listen);
    if (d->metrics_fd >= 0) d->metrics_addr = pmx_xstrdup(d->conf.cfg.metrics_listen);
    if (d->http_fd >= 0) d->http_addr = pmx_xstrdup(d->conf.cfg.http_listen);
    if (d->inbound_fd >= 0) d->inbound_addr = pmx_xstrdup(d->conf.cfg.inbound_listen);
    d->shm = pmx_shm_create();
    if (!d->shm) {
        pmx_log_error("cannot map the worker scoreboard: %s", strerror(errno));
        cleanup(d);
        return 1;
    }
    d->metrics = pmx_metrics_shm_create();
    if (!d->metrics) {
        pmx_log_error("cannot map the metrics region: %s", strerror(errno));
        cleanup(d);
        return 1;
    }
    pmx_metrics_shm_attach(d->metrics, -1);
    d->peers = pmx_peers_shm_create();
    if (!d->peers) {
        pmx_log_error("cannot map the failed-AUTH table: %s", strerror(errno));
        cleanup(d);
        return 1;
    }
    pmx_peers_shm_attach(d->peers);   /* inherited by every worker */
    d->sites = pmx_sites_shm_create();
    if (!d->sites) {
        pmx_log_error("cannot map the MX site table: %s", strerror(errno));
        cleanup(d);
        return 1;
    }
    pmx_sites_shm_attach(d->sites);

    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) d->watchdog_half_ms = wd_usec / 2000;
    d->tick_ms = PMX_DAEMON_TICK_MS;
    if (d->watchdog_half_ms && d->watchdog_half_ms / 2 < d->tick_ms)
        d->tick_ms = d->watchdog_half_ms / 2 < 50 ? 50 : d->watchdog_half_ms / 2;
    if (setup_signals(d) < 0) {
        pmx_log_error("cannot set up signals: %s", strerror(errno));
        cleanup(d);
        return 1;
    }
    pmx_log_info("starting workers=%d config=%s metrics_listen=%s submission_listen=%s "
                 "inbound_listen=%s watchdog_ms=%llu", d->conf.cfg.workers, path,
                 d->metrics_addr ? d->metrics_addr : "off",
                 d->submission_addr ? d->submission_addr : "off",
                 d->inbound_addr ? d->inbound_addr : "off",
                 (unsigned long long)(d->watchdog_half_ms * 2));

    uint64_t now = pmx_shm_now_ms();
    d->last_watchdog_ms = now;
    rate_sample(d, now);
    reconcile(d, now);
    update_status(d, now, true);

    sigset_t waitmask;
    sigemptyset(&waitmask);
    for (;;) {
        if (!sig_child && !sig_stop && !sig_reload && !sig_tick) sigsuspend(&waitmask);
        now = pmx_shm_now_ms();
        if (sig_child) {
            sig_child = 0;
            reap(d);
        }
        if (sig_stop) {
            int signo = sig_stop;
            sig_stop = 0;
            begin_drain(d, 0, signo == SIGINT ? "SIGINT" : "SIGTERM");
        }
        if (sig_reload) {
            sig_reload = 0;
            if (!d->draining) reload(d);
        }
        if (sig_tick) {
            sig_tick = 0;
            check_workers(d, now);
            rate_sample(d, now);
        }
        reconcile(d, now);
        if (d->draining && count_live(d) == 0) break;
        readiness_tick(d);
        watchdog_tick(d, now);
        update_status(d, now, false);
    }
    int code = d->exit_code;
    pmx_log_info("stopped exit=%d", code);
    cleanup(d);
    return code;
}
