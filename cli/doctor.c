/*
 * `postmux doctor` (postmux(1)): checks what postmuxd needs before it can carry
 * mail, one line each, "OK", "WARN" or "FAIL" followed by what was checked:
 *
 *   config         the file loads (nothing else runs without it)
 *   postgres       connects; schema version equals the newest compiled-in migration
 *   redis          answers PING
 *   redis appendonly / appendfsync
 *                  WARN unless yes / always: a 250 from submission is only as
 *                  durable as the queue's Redis (docs/submission.md)
 *   redis client unblock
 *                  WARN when the ACL refuses CLIENT UNBLOCK (postmuxd ends a
 *                  blocking read early with it when a stream becomes readable)
 *   master key     loads as 32 bytes (dkim/keycrypt); WARN if others can read it
 *   relay          accepts TCP and greets with 220; with tls = starttls it must
 *                  offer STARTTLS and complete the handshake, with tls = tls the
 *                  handshake comes first; certificates verified as postmuxd would
 *                  (tls_verify, ca_file). QUIT at the end. With [delivery]
 *                  route = mx instead: the resolver of [mx] can be set up.
 *
 * Exit 1 if any check FAILs, else 0 (WARN is fine). Each check opens its own
 * connection with a short timeout, so one dead service does not hide the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "dkim/keycrypt.h"
#include "lib/buf.h"
#include "lib/mem.h"
#include "queue/endpoint.h"
#include "routing/resolver.h"
#include "routing/egress.h"
#include "sql/db.h"

#define TIMEOUT_S 5

typedef struct {
    int fails, warns;
} doctor_t;

static void line(doctor_t *d, const char *status, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line(doctor_t *d, const char *status, const char *what, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    printf("%-4s %s: %s\n", status, what, msg);
    fflush(stdout);
    if (status[0] == 'F') d->fails++;
    if (status[0] == 'W') d->warns++;
}

/* ---- Postgres ---- */

static void check_postgres(doctor_t *d, pmx_cli_t *c)
{
    static const char *const keys[] = { "dbname", "connect_timeout", NULL };
    const char *vals[] = { c->cfg.pg_conninfo, "5", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        line(d, "FAIL", "postgres", "cannot connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return;
    }
    int server = PQserverVersion(pg);
    line(d, "OK", "postgres", "connected (server %d.%d)", server / 10000, server % 10000);

    int latest = pmx_db_schema_latest(), v;
    bool exists;
    char err[512];
    if (pmx_db_schema_state(pg, &exists, &v, err, sizeof err) < 0)
        line(d, "FAIL", "schema", "%s", err);
    else if (!exists)
        line(d, "FAIL", "schema", "not migrated (no schema_migrations): run postmux migrate");
    else if (v == latest)
        line(d, "OK", "schema", "version %d (current)", v);
    else if (v < latest)
        line(d, "FAIL", "schema", "version %d, this postmux needs %d: run postmux migrate", v,
             latest);
    else
        line(d, "FAIL", "schema", "version %d is newer than this postmux (%d): upgrade postmux",
             v, latest);
    PQfinish(pg);
}

/* ---- Redis ---- */

static redisReply *command(redisContext *r, const char *cmd, const char *arg)
{
    const char *argv[2] = { cmd, arg };
    return redisCommandArgv(r, arg ? 2 : 1, argv, NULL);
}

/* CONFIG GET NAME -> the value (copied into out), or -1 with the reason in out. */
static int config_get(redisContext *r, const char *name, char *out, size_t outlen)
{
    const char *argv[3] = { "CONFIG", "GET", name };
    redisReply *rep = redisCommandArgv(r, 3, argv, NULL);
    int rc = -1;
    if (!rep) snprintf(out, outlen, "%s", r->errstr);
    else if (rep->type == REDIS_REPLY_ERROR) snprintf(out, outlen, "%s", rep->str);
    else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             rep->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, outlen, "%s", rep->element[1]->str);
        rc = 0;
    } else snprintf(out, outlen, "unexpected reply");
    if (rep) freeReplyObject(rep);
    return rc;
}

static void check_redis(doctor_t *d, pmx_cli_t *c)
{
    char err[300];
    pmx_queue_endpoint_t a;
    if (pmx_queue_parse_endpoint(c->cfg.redis_address, &a, err, sizeof err) < 0) {
        line(d, "FAIL", "redis", "[redis] address %s", err);
        return;
    }
    struct timeval tv = { TIMEOUT_S, 0 };
    redisContext *r = a.unix_socket ? redisConnectUnixWithTimeout(a.host, tv)
                                    : redisConnectWithTimeout(a.host, a.port, tv);
    if (!r || r->err) {
        line(d, "FAIL", "redis", "cannot connect to %s: %s", c->cfg.redis_address,
             r ? r->errstr : "out of memory");
        if (r) redisFree(r);
        return;
    }
    redisSetTimeout(r, tv);
    if (c->cfg.redis_password_file[0]) {
        char *pw = NULL;
        size_t pwlen = 0;
        if (pmx_config_read_secret(c->cfg.redis_password_file, &pw, &pwlen, err, sizeof err) < 0) {
            line(d, "FAIL", "redis", "password_file: %s", err);
            redisFree(r);
            return;
        }
        const char *argv[2] = { "AUTH", pw };
        size_t lens[2] = { 4, pwlen };
        redisReply *rep = redisCommandArgv(r, 2, argv, lens);
        pmx_wipe(pw, pwlen);
        free(pw);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (!ok) line(d, "FAIL", "redis", "AUTH failed: %s", rep ? rep->str : r->errstr);
        if (rep) freeReplyObject(rep);
        if (!ok) {
            redisFree(r);
            return;
        }
    }

    redisReply *rep = command(r, "PING", NULL);
    if (!rep || rep->type == REDIS_REPLY_ERROR ||
        !(rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0)) {
        line(d, "FAIL", "redis", "PING to %s: %s", c->cfg.redis_address,
             !rep ? r->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        if (rep) freeReplyObject(rep);
        redisFree(r);
        return;
    }
    freeReplyObject(rep);
    line(d, "OK", "redis", "%s answers PING", c->cfg.redis_address);

    char v[256];
    if (config_get(r, "appendonly", v, sizeof v) < 0)
        line(d, "WARN", "redis appendonly", "cannot read (%s); it should be yes", v);
    else if (strcasecmp(v, "yes") != 0)
        line(d, "WARN", "redis appendonly",
             "%s: queued jobs are lost if Redis stops; set appendonly yes", v);
    else
        line(d, "OK", "redis appendonly", "yes");
    if (config_get(r, "appendfsync", v, sizeof v) < 0)
        line(d, "WARN", "redis appendfsync", "cannot read (%s); it should be always", v);
    else if (strcasecmp(v, "always") != 0)
        line(d, "WARN", "redis appendfsync",
             "%s: the last writes can be lost on a crash; set appendfsync always", v);
    else
        line(d, "OK", "redis appendfsync", "always");

    /* postmuxd ends a blocking read early with CLIENT UNBLOCK when a stream becomes
     * readable (docs/delivery.md "When a gate empties"). Id 0 is never a client: 0 = allowed. */
    const char *ub[3] = { "CLIENT", "UNBLOCK", "0" };
    redisReply *u = redisCommandArgv(r, 3, ub, NULL);
    if (u && u->type == REDIS_REPLY_INTEGER)
        line(d, "OK", "redis client unblock", "allowed");
    else
        line(d, "WARN", "redis client unblock",
             "refused (%s): reads cannot be ended early, so a rate-limited workspace gets at "
             "most one read's worth of jobs a second; allow +client|unblock",
             !u ? r->errstr : u->type == REDIS_REPLY_ERROR ? u->str : "unexpected reply");
    if (u) freeReplyObject(u);
    redisFree(r);
}

/* ---- master key ---- */

static void check_master_key(doctor_t *d, pmx_cli_t *c)
{
    const char *path = c->cfg.master_key_file;
    uint8_t key[PMX_DKIM_MASTER_KEY_LEN];
    char err[512];
    if (pmx_dkim_master_key_load(path, key, err, sizeof err) < 0) {
        line(d, "FAIL", "master key", "%s", err);
        return;
    }
    pmx_wipe(key, sizeof key);
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)))
        line(d, "WARN", "master key", "%s is readable or writable by others: chmod o-rw", path);
    else
        line(d, "OK", "master key", "%s (32 bytes)", path);
}

/* ---- egress pools (docs/delivery.md "Egress pools") ---- */

/* One line per [pool NAME]: every address must be one this host can bind. */
static void check_pools(doctor_t *d, pmx_cli_t *c)
{
    pmx_egress_set_t set;
    pmx_egress_set_init(&set, &c->cfg);
    for (size_t i = 0; i < set.n; i++) {
        const pmx_egress_t *e = &set.v[i];
        char what[80], why[300];
        snprintf(what, sizeof what, "pool %s", e->name);
        size_t k = 0;
        while (k < e->n && pmx_egress_bind_check(e, k, why, sizeof why) == 0) k++;
        if (k < e->n) {
            line(d, "FAIL", what, "%s (the pool's sessions would fail)", why);
            continue;
        }
        pmx_buf_t list = PMX_BUF_INIT;
        for (k = 0; k < e->n; k++) pmx_buf_appendf(&list, "%s%s", k ? ", " : "", e->shown[k]);
        line(d, "OK", what, "%s bindable, helo %s", pmx_buf_cstr(&list),
             e->helo_name[0] ? e->helo_name : "of the route");
        pmx_buf_free(&list);
    }
    pmx_egress_set_free(&set);
}

/* ---- relay ---- */

typedef struct {
    int  fd;
    SSL *ssl;
} conn_t;

/* TCP connect to host:port with a timeout; -1 with the reason in err. */
static int tcp_connect(const char *host, int port, char *err, size_t errlen)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, service, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    snprintf(err, errlen, "no address for %s", host);
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) continue;
        int rc = connect(fd, p->ai_addr, p->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = { fd, POLLOUT, 0 };
            rc = poll(&pfd, 1, TIMEOUT_S * 1000);
            if (rc == 0) {
                errno = ETIMEDOUT;
                rc = -1;
            } else if (rc > 0) {
                int soerr = 0;
                socklen_t len = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                errno = soerr;
                rc = soerr ? -1 : 0;
            }
        }
        if (rc == 0) break;
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    /* Blocking from here on, with timeouts on every read and write. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = { TIMEOUT_S, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int conn_write(conn_t *cn, const char *s)
{
    size_t n = strlen(s);
    if (cn->ssl) return SSL_write(cn->ssl, s, (int)n) == (int)n ? 0 : -1;
    while (n) {
        ssize_t w = send(cn->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Reads one SMTP reply (all its lines) into out, one byte at a time so
 * nothing after the reply is consumed (it matters before STARTTLS). Returns
 * the reply code, or -1 (timeout, closed, malformed) with the reason in out.
 */
static int read_reply(conn_t *cn, pmx_buf_t *out)
{
    pmx_buf_reset(out);
    size_t line_start = 0;
    while (out->len < 65536) {
        char ch;
        int n = cn->ssl ? SSL_read(cn->ssl, &ch, 1) : (int)recv(cn->fd, &ch, 1, 0);
        if (n <= 0) {
            const char *why = n == 0 ? "connection closed" : "timed out or failed reading";
            pmx_buf_reset(out);
            pmx_buf_append_str(out, why);
            return -1;
        }
        pmx_buf_append_char(out, ch);
        if (ch != '\n') continue;
        const char *l = out->data + line_start;
        size_t ll = out->len - line_start;
        if (ll < 5 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
            l[2] > '9' || (l[3] != ' ' && l[3] != '-' && l[3] != '\r')) {
            pmx_buf_reset(out);
            pmx_buf_append_str(out, "not an SMTP reply");
            return -1;
        }
        if (l[3] != '-') return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        line_start = out->len;
    }
    pmx_buf_reset(out);
    pmx_buf_append_str(out, "reply too long");
    return -1;
}

/* The first line of a reply, printable and short, for the report. */
static void first_line(const pmx_buf_t *b, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < b->len && b->data[i] != '\r' && b->data[i] != '\n' && j + 1 < outlen &&
                       j < 100; i++) {
        unsigned char ch = (unsigned char)b->data[i];
        out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    out[j] = '\0';
}

/* True when the EHLO reply lists the keyword (e.g. STARTTLS). */
static bool ehlo_has(const pmx_buf_t *b, const char *kw)
{
    size_t kl = strlen(kw);
    for (const char *l = b->data; l && *l; ) {
        const char *e = strchr(l, '\n');
        size_t ll = e ? (size_t)(e - l) : strlen(l);
        if (ll >= 4 + kl && strncasecmp(l + 4, kw, kl) == 0 &&
            (ll == 4 + kl || l[4 + kl] == ' ' || l[4 + kl] == '\r'))
            return true;
        l = e ? e + 1 : NULL;
    }
    return false;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* TLS handshake on cn->fd as postmuxd would do it; -1 with the reason in err. */
static int tls_start(conn_t *cn, SSL_CTX **ctxp, pmx_cli_t *c, char *err, size_t errlen)
{
    const char *host = c->cfg.relay_host;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "OpenSSL: cannot create a TLS context");
        return -1;
    }
    *ctxp = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (c->cfg.relay_tls_verify) {
        SSL_CTX_set_default_verify_paths(ctx);
        if (c->cfg.relay_ca_file[0] &&
            SSL_CTX_load_verify_locations(ctx, c->cfg.relay_ca_file, NULL) != 1) {
            snprintf(err, errlen, "cannot load ca_file %s", c->cfg.relay_ca_file);
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    cn->ssl = SSL_new(ctx);
    if (!cn->ssl) {
        snprintf(err, errlen, "OpenSSL: cannot create a TLS session");
        return -1;
    }
    SSL_set_fd(cn->ssl, cn->fd);
    if (!is_ip(host)) SSL_set_tlsext_host_name(cn->ssl, host);
    if (c->cfg.relay_tls_verify) {
        if (is_ip(host)) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cn->ssl), host);
        else SSL_set1_host(cn->ssl, host);
    }
    ERR_clear_error();
    if (SSL_connect(cn->ssl) != 1) {
        long vr = SSL_get_verify_result(cn->ssl);
        unsigned long e = ERR_get_error();
        char ebuf[256];
        ERR_error_string_n(e, ebuf, sizeof ebuf);
        if (vr != X509_V_OK)
            snprintf(err, errlen, "TLS handshake failed: certificate: %s",
                     X509_verify_cert_error_string(vr));
        else
            snprintf(err, errlen, "TLS handshake failed: %s", e ? ebuf : "connection closed");
        SSL_free(cn->ssl);
        cn->ssl = NULL;
        return -1;
    }
    return 0;
}

/* [delivery] route = mx: the resolver can be set up as the workers set it up
 * (postmux mx DOMAIN looks a domain up), and the shaping file loads. */
static void check_mx(doctor_t *d, pmx_cli_t *c)
{
    char err[300];
    void *ctx = pmx_resolver_sync_new(c->cfg.mx_resolver, err, sizeof err);
    if (!ctx) {
        line(d, "FAIL", "mx resolver", "%s", err);
        return;
    }
    pmx_resolver_sync_free(ctx);
    line(d, "OK", "mx resolver", "%s (route = mx; the relay is not used; try postmux mx DOMAIN)",
         c->cfg.mx_resolver[0] ? c->cfg.mx_resolver : "/etc/resolv.conf");
}

static void check_relay(doctor_t *d, pmx_cli_t *c)
{
    const pmx_config_t *cfg = &c->cfg;
    char where[300], err[512], greet[128];
    snprintf(where, sizeof where, "%s:%d", cfg->relay_host, cfg->relay_port);
    conn_t cn = { -1, NULL };
    SSL_CTX *ctx = NULL;
    pmx_buf_t rep = PMX_BUF_INIT;

    cn.fd = tcp_connect(cfg->relay_host, cfg->relay_port, err, sizeof err);
    if (cn.fd < 0) {
        line(d, "FAIL", "relay", "%s", err);
        goto done;
    }
    if (cfg->relay_tls == PMX_TLS_IMPLICIT && tls_start(&cn, &ctx, c, err, sizeof err) < 0) {
        line(d, "FAIL", "relay", "%s (tls = tls): %s", where, err);
        goto done;
    }
    int code = read_reply(&cn, &rep);
    first_line(&rep, greet, sizeof greet);
    if (code != 220) {
        line(d, "FAIL", "relay", "%s did not greet with 220: %s", where, greet);
        goto done;
    }
    const char *tls_note = cfg->relay_tls == PMX_TLS_IMPLICIT ? ", TLS ok" : "";
    if (cfg->relay_tls == PMX_TLS_STARTTLS) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "EHLO %s\r\n", cfg->relay_helo_name[0] ? cfg->relay_helo_name
                                                                          : "localhost");
        if (conn_write(&cn, cmd) < 0 || read_reply(&cn, &rep) != 250) {
            first_line(&rep, err, sizeof err);
            line(d, "FAIL", "relay", "%s refused EHLO: %s", where, err);
            goto done;
        }
        if (!ehlo_has(&rep, "STARTTLS")) {
            line(d, "FAIL", "relay",
                 "%s does not offer STARTTLS (tls = starttls: every message would be deferred)",
                 where);
            goto done;
        }
        if (conn_write(&cn, "STARTTLS\r\n") < 0 || read_reply(&cn, &rep) != 220) {
            first_line(&rep, err, sizeof err);
            line(d, "FAIL", "relay", "%s refused STARTTLS: %s", where, err);
            goto done;
        }
        if (tls_start(&cn, &ctx, c, err, sizeof err) < 0) {
            line(d, "FAIL", "relay", "%s (tls = starttls): %s", where, err);
            goto done;
        }
        tls_note = ", STARTTLS ok";
    }
    line(d, "OK", "relay", "%s answered %s%s", where, greet, tls_note);
    if (conn_write(&cn, "QUIT\r\n") == 0) read_reply(&cn, &rep);
done:
    if (cn.ssl) {
        SSL_shutdown(cn.ssl);
        SSL_free(cn.ssl);
    }
    if (ctx) SSL_CTX_free(ctx);
    if (cn.fd >= 0) close(cn.fd);
    pmx_buf_free(&rep);
}

int pmx_cli_doctor(pmx_cli_t *c, int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            fputs("usage: postmux doctor\n", stdout);
            return PMX_EXIT_OK;
        }
        return pmx_cli_usage("usage: postmux doctor");
    }
    doctor_t d = { 0, 0 };
    char err[512];
    if (pmx_config_load(c->config_path, &c->cfg, err, sizeof err) < 0) {
        line(&d, "FAIL", "config", "%s", err);
        return PMX_EXIT_USER;
    }
    c->cfg_loaded = true;
    line(&d, "OK", "config", "%s", c->config_path);

    check_postgres(&d, c);
    check_redis(&d, c);
    check_master_key(&d, c);
    if (c->cfg.delivery_route == PMX_ROUTE_MX) check_mx(&d, c);
    else check_relay(&d, c);
    check_pools(&d, c);
    return d.fails ? PMX_EXIT_USER : PMX_EXIT_OK;
}
