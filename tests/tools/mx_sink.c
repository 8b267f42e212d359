/*
 * mx_sink: a fast SMTP sink standing in for many MX hosts in `make bench` (the `mx`
 * scenario, docs/bench.md). It listens on several loopback addresses on one port
 * ([mx] port), one address per site, accepts every message, keeps nothing, and counts
 * per address: sessions, sessions open at once and the most ever open at once,
 * messages, recipients. One thread, epoll, no parsing beyond what SMTP needs: a
 * command line is matched on its first four letters, DATA is scanned for the
 * terminator without being stored. tests/tools/mx_server.py does the same job with
 * behaviour per address for the integration tests, but as Python asyncio it is too
 * slow (and too costly in CPU) for thousands of messages a second on two cores.
 *
 *   mx_sink --listen ADDR [--listen ADDR]... [--port P] --port-file F --stats F
 *
 * Port 0 (the default) takes a free port for the first address and the same port for
 * the others; --port-file gets it once every address listens. SIGUSR1 writes the
 * counters to --stats (a temp file renamed into place, so a reader never sees half of
 * it), one line per address:
 *   ADDR sessions=N open=N max_open=N messages=N rcpts=N errors=N
 * SIGUSR2 zeroes the counters (max_open starts again from the sessions open now).
 * SIGTERM/SIGINT write the counters and exit 0.
 *
 * Why the counts are exact: a client that ends a session (QUIT, or its FIN) and then
 * opens a new one has its QUIT/FIN in this side's socket before its new SYN reaches
 * the listener (loopback delivers in order within the sender's call), and within
 * every epoll batch the sessions' events are handled before the listeners', so a
 * session that ended is counted out before the one that replaces it is counted in.
 *
 * Limits, since anything may connect: a command line of at most 1,000 octets (longer:
 * 500 and the session is closed), at most 4,096 sessions, 60 s without input closes a
 * session. A reply that does not fit in the socket at once (a client that does not
 * read) closes the session and counts an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ADDRS 64
#define MAX_CONNS 4096
#define LINE_MAX_LEN 1000
#define IDLE_S 60

typedef struct {
    char     name[INET_ADDRSTRLEN];
    int      fd;
    uint64_t sessions, open, max_open, messages, rcpts, errors;
} site_t;

typedef enum { ST_CMD, ST_DATA } conn_state_t;

typedef struct {
    int          fd;          /* -1: free slot */
    int          site;
    conn_state_t state;
    int          dot;         /* progress through "\r\n.\r\n" while in DATA */
    size_t       len;         /* octets of an unfinished command line in line[] */
    time_t       last;
    char         line[LINE_MAX_LEN + 2];
} conn_t;

static site_t   sites[MAX_ADDRS];
static int      nsites;
static conn_t  *conns;        /* indexed by fd */
static int      epfd;
static volatile sig_atomic_t want_stats, want_reset, want_exit;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) want_stats = 1;
    else if (sig == SIGUSR2) want_reset = 1;
    else want_exit = 1;
}

static int write_stats(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    for (int i = 0; i < nsites; i++) {
        site_t *s = &sites[i];
        fprintf(f, "%s sessions=%llu open=%llu max_open=%llu messages=%llu rcpts=%llu errors=%llu\n",
                s->name, (unsigned long long)s->sessions, (unsigned long long)s->open,
                (unsigned long long)s->max_open, (unsigned long long)s->messages,
                (unsigned long long)s->rcpts, (unsigned long long)s->errors);
    }
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

static void conn_close(conn_t *c)
{
    site_t *s = &sites[c->site];
    s->open--;
    close(c->fd);   /* also leaves the epoll set */
    c->fd = -1;
}

/* Replies of one read are gathered and sent in one write (flush): pipelined commands
 * get their answers together, and separate small writes would meet Nagle and the
 * client's delayed ACK. */
static char   out[16384];
static size_t outlen;

/* Sends what was gathered, or closes the session when the socket does not take it all
 * (see the header comment). False when the session was closed. */
static bool flush(conn_t *c)
{
    if (!outlen) return true;
    ssize_t w = write(c->fd, out, outlen);
    bool ok = w == (ssize_t)outlen;
    outlen = 0;
    if (ok) return true;
    sites[c->site].errors++;
    conn_close(c);
    return false;
}

static bool reply(conn_t *c, const char *text)
{
    size_t n = strlen(text);
    if (outlen + n > sizeof out && !flush(c)) return false;
    memcpy(out + outlen, text, n);
    outlen += n;
    return true;
}

/* One complete command line (CRLF or LF stripped). False when the session ended. */
static bool command(conn_t *c, const char *line, size_t len)
{
    site_t *s = &sites[c->site];
    if (len >= 4 && !strncasecmp(line, "EHLO", 4))
        return reply(c, "250-mx.sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                        "250-ENHANCEDSTATUSCODES\r\n250 SIZE 52428800\r\n");
    if (len >= 4 && !strncasecmp(line, "HELO", 4)) return reply(c, "250 mx.sink\r\n");
    if (len >= 4 && !strncasecmp(line, "MAIL", 4)) return reply(c, "250 2.1.0 Ok\r\n");
    if (len >= 4 && !strncasecmp(line, "RCPT", 4)) {
        s->rcpts++;
        return reply(c, "250 2.1.5 Ok\r\n");
    }
    if (len == 4 && !strncasecmp(line, "DATA", 4)) {
        c->state = ST_DATA;
        c->dot = 2;   /* the DATA line's own CRLF counts: a lone "." ends at once */
        return reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
    }
    if (len >= 4 && (!strncasecmp(line, "RSET", 4) || !strncasecmp(line, "NOOP", 4)))
        return reply(c, "250 2.0.0 Ok\r\n");
    if (len >= 4 && !strncasecmp(line, "QUIT", 4)) {
        if (reply(c, "221 2.0.0 Bye\r\n") && flush(c)) conn_close(c);
        return false;
    }
    return reply(c, "502 5.5.2 Error: command not recognized\r\n");
}

/* Feeds DATA octets; returns how many were consumed (up to and including the
 * terminator when it is among them). */
static size_t data(conn_t *c, const char *p, size_t n)
{
    static const char term[] = "\r\n.\r\n";
    for (size_t i = 0; i < n; i++) {
        if (p[i] == term[c->dot]) {
            if (++c->dot == 5) {
                c->state = ST_CMD;
                sites[c->site].messages++;
                return i + 1;
            }
        } else {
            c->dot = p[i] == '\r' ? 1 : 0;
        }
    }
    return n;
}

static void conn_read(conn_t *c)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r == 0) { outlen = 0; conn_close(c); return; }
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) conn_close(c);
            return;
        }
        c->last = time(NULL);
        size_t off = 0, n = (size_t)r;
        while (off < n) {
            if (c->state == ST_DATA) {
                off += data(c, buf + off, n - off);
                if (c->state == ST_CMD && !reply(c, "250 2.0.0 Ok: queued\r\n")) return;
                continue;
            }
            const char *nl = memchr(buf + off, '\n', n - off);
            size_t take = nl ? (size_t)(nl - (buf + off)) + 1 : n - off;
            if (c->len + take > LINE_MAX_LEN + 2) {
                sites[c->site].errors++;
                if (reply(c, "500 5.5.6 Line too long\r\n") && flush(c)) conn_close(c);
                return;
            }
            memcpy(c->line + c->len, buf + off, take);
            c->len += take;
            off += take;
            if (!nl) break;
            size_t len = c->len;
            while (len && (c->line[len - 1] == '\n' || c->line[len - 1] == '\r')) len--;
            c->len = 0;
            if (!command(c, c->line, len)) return;
        }
        if (!flush(c)) return;
        if ((size_t)r < sizeof buf) return;
    }
}

static void accept_all(int site)
{
    for (;;) {
        int fd = accept4(sites[site].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;   /* EAGAIN, or a transient error: the next event retries */
        if (fd >= MAX_CONNS) {
            sites[site].errors++;
            close(fd);
            continue;
        }
        conn_t *c = &conns[fd];
        *c = (conn_t){ .fd = fd, .site = site, .state = ST_CMD, .last = time(NULL) };
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)fd };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            c->fd = -1;
            sites[site].errors++;
            continue;
        }
        site_t *s = &sites[site];
        s->sessions++;
        if (++s->open > s->max_open) s->max_open = s->open;
        if (reply(c, "220 mx.sink ESMTP\r\n")) flush(c);
    }
}

static int listen_on(const char *addr, int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port) };
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "mx_sink: not an IPv4 address: %s\n", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "mx_sink: cannot listen on %s:%d: %s\n", addr, *port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (*port == 0) {
        socklen_t sl = sizeof sa;
        if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) { close(fd); return -1; }
        *port = ntohs(sa.sin_port);
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: mx_sink --listen ADDR [--listen ADDR]... [--port P] --port-file F --stats F\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' }, { "port", required_argument, NULL, 'p' },
        { "port-file", required_argument, NULL, 'f' }, { "stats", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    const char *addrs[MAX_ADDRS], *port_file = NULL, *stats = NULL;
    int naddrs = 0, port = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            if (naddrs == MAX_ADDRS) { fprintf(stderr, "mx_sink: at most %d addresses\n", MAX_ADDRS); return 2; }
            addrs[naddrs++] = optarg;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 65535) usage();
            port = (int)v;
            break;
        }
        case 'f': port_file = optarg; break;
        case 's': stats = optarg; break;
        default: usage();
        }
    }
    if (!naddrs || !port_file || !stats || optind != argc) usage();

    conns = calloc(MAX_CONNS, sizeof *conns);
    if (!conns) return 1;
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return 1;
    for (int i = 0; i < naddrs; i++) {
        site_t *s = &sites[nsites];
        snprintf(s->name, sizeof s->name, "%s", addrs[i]);
        if ((s->fd = listen_on(addrs[i], &port)) < 0) return 1;
        /* Listeners are told apart from sessions by u32 >= MAX_CONNS. */
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)(MAX_CONNS + nsites) };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) return 1;
        nsites++;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    FILE *pf = fopen(port_file, "w");
    if (!pf || fprintf(pf, "%d\n", port) < 0 || fclose(pf) != 0) {
        fprintf(stderr, "mx_sink: cannot write %s\n", port_file);
        return 1;
    }

    struct epoll_event evs[1024];
    time_t last_sweep = time(NULL);
    while (!want_exit) {
        int n = epoll_wait(epfd, evs, 1024, 1000);
        if (n < 0 && errno != EINTR) { perror("mx_sink: epoll_wait"); return 1; }
        /* Sessions first, then the listeners (see the header comment). */
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id < MAX_CONNS && conns[id].fd >= 0) conn_read(&conns[id]);
        }
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id >= MAX_CONNS) accept_all((int)(id - MAX_CONNS));
        }
        if (want_reset) {
            want_reset = 0;
            for (int i = 0; i < nsites; i++) {
                site_t *s = &sites[i];
                s->sessions = s->messages = s->rcpts = s->errors = 0;
                s->max_open = s->open;
            }
        }
        if (want_stats) {
            want_stats = 0;
            if (write_stats(stats) < 0) fprintf(stderr, "mx_sink: cannot write %s\n", stats);
        }
        time_t now = time(NULL);
        if (now - last_sweep >= 1) {
            last_sweep = now;
            for (int fd = 0; fd < MAX_CONNS; fd++)
                if (conns[fd].fd >= 0 && now - conns[fd].last > IDLE_S) conn_close(&conns[fd]);
        }
    }
    if (write_stats(stats) < 0) fprintf(stderr, "mx_sink: cannot write %s\n", stats);
    return 0;
}
