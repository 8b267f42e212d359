/*
 * `postmux mx DOMAIN [--json]` (postmux(1)): where direct delivery would send
 * mail for DOMAIN — its MX hosts in the order tried, their addresses (those
 * in a refused range counted apart), the site they make and the rule that
 * applies to it. The lookup is the workers' own (routing/mx.h on a libuv
 * loop, with [mx] resolver, port and allow_networks of the config), so what
 * it prints is what a worker would do.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli/cli.h"
#include "lib/mem.h"
#include "routing/mx.h"
#include "routing/resolver.h"
#include "routing/shaping.h"

static const char *const mx_usage = "usage: postmux mx DOMAIN [--json]\n";

static void on_route(void *arg, pmx_mx_route_t *route)
{
    pmx_mx_route_t **out = arg;
    pmx_mx_route_ref(route);
    *out = route;
}

static const char *status_name(pmx_mx_status_t s)
{
    return s == PMX_MX_OK ? "ok" : s == PMX_MX_BOUNCE ? "bounce" : "defer";
}

/* The rule of the route's site: its name and limits ([mx]'s when none matches). */
typedef struct {
    const char *name;
    int         connections, per_conn;
    const pmx_shaping_rule_t *rule;
} rule_t;

static rule_t rule_of(const pmx_mx_route_t *r, const pmx_shaping_t *sh, const pmx_config_t *cfg)
{
    rule_t out = { "default", cfg->mx_connections_per_site, cfg->mx_messages_per_connection, NULL };
    if (r->status != PMX_MX_OK) return out;
    const char **names = pmx_xcalloc(r->nhosts, sizeof *names);
    for (size_t i = 0; i < r->nhosts; i++) names[i] = r->hosts[i].name;
    const pmx_shaping_rule_t *rule = pmx_shaping_match(sh, names, r->nhosts);
    free(names);
    if (!rule) return out;
    out.rule = rule;
    out.name = rule->name;
    if (rule->connections) out.connections = rule->connections;
    if (rule->messages_per_connection) out.per_conn = rule->messages_per_connection;
    return out;
}

static int print_json(const pmx_mx_route_t *r, const rule_t *ru)
{
    json_t *o = json_object();
    json_object_set_new(o, "domain", json_string(r->domain));
    json_object_set_new(o, "status", json_string(status_name(r->status)));
    json_object_set_new(o, "reply", r->reply ? json_string(r->reply) : json_null());
    json_object_set_new(o, "implicit_mx", json_boolean(r->implicit));
    json_object_set_new(o, "site", r->site ? json_string(r->site) : json_null());
    json_t *rule = json_object(), *onr = json_array();
    json_object_set_new(rule, "name", json_string(ru->name));
    json_object_set_new(rule, "connections", json_integer(ru->connections));
    json_object_set_new(rule, "messages_per_connection", json_integer(ru->per_conn));
    for (size_t i = 0; ru->rule && i < ru->rule->non_reply; i++) {
        json_t *o2 = json_object();
        json_object_set_new(o2, "regex", json_string(ru->rule->on_reply[i].text));
        json_object_set_new(o2, "suspend_s", json_integer((json_int_t)(ru->rule->on_reply[i].suspend_ms / 1000)));
        json_array_append_new(onr, o2);
    }
    json_object_set_new(rule, "on_reply", onr);
    bool rated = ru->rule && ru->rule->rate_per_second > 0;
    json_object_set_new(rule, "rate", rated ? json_string(ru->rule->rate_text) : json_null());
    json_object_set_new(rule, "burst", rated ? json_integer(ru->rule->burst) : json_null());
    json_object_set_new(o, "rule", rule);
    json_t *hosts = json_array();
    for (size_t i = 0; i < r->nhosts; i++) {
        const pmx_mx_host_t *h = &r->hosts[i];
        json_t *ho = json_object(), *addrs = json_array();
        for (size_t k = 0; k < h->naddrs; k++) {
            char a[64];
            pmx_mx_addr_str(&h->addrs[k], a, sizeof a);
            json_array_append_new(addrs, json_string(a));
        }
        json_object_set_new(ho, "name", json_string(h->name));
        json_object_set_new(ho, "preference", json_integer(h->pref));
        json_object_set_new(ho, "addresses", addrs);
        json_object_set_new(ho, "refused", json_integer((json_int_t)h->refused));
        json_object_set_new(ho, "lookup_failed", json_boolean(h->tempfail));
        json_array_append_new(hosts, ho);
    }
    json_object_set_new(o, "hosts", hosts);
    return pmx_cli_print_json(o);
}

static void print_text(const pmx_mx_route_t *r, const rule_t *ru)
{
    printf("domain  %s\n", r->domain);
    printf("status  %s%s%s\n", status_name(r->status), r->reply ? ": " : "",
           r->reply ? r->reply : "");
    if (r->site) printf("site    %s\n", r->site);
    printf("rule    %s (connections_per_site %d, messages_per_connection %d)\n", ru->name,
           ru->connections, ru->per_conn);
    for (size_t i = 0; ru->rule && i < ru->rule->non_reply; i++)
        printf("        on_reply %s => suspend %llus\n", ru->rule->on_reply[i].text,
               (unsigned long long)(ru->rule->on_reply[i].suspend_ms / 1000));
    if (ru->rule && ru->rule->rate_per_second > 0)
        printf("        rate %s, burst %d (transactions, all hosts)\n", ru->rule->rate_text,
               ru->rule->burst);
    for (size_t i = 0; i < r->nhosts; i++) {
        const pmx_mx_host_t *h = &r->hosts[i];
        printf("%s %5d %s%s", i ? "       " : "mx     ", h->pref, h->name,
               r->implicit ? " (no MX record: the domain itself)" : "");
        for (size_t k = 0; k < h->naddrs; k++) {
            char a[64];
            pmx_mx_addr_str(&h->addrs[k], a, sizeof a);
            printf("%s%s", k ? ", " : "  ", a);
        }
        if (h->refused) printf("  (%zu address%s refused: allow_networks)", h->refused,
                               h->refused == 1 ? "" : "es");
        if (!h->naddrs && !h->refused) printf("  (%s)", h->tempfail ? "lookup failed" : "no address");
        printf("\n");
    }
}

int pmx_cli_mx(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 },
    };
    bool json = false;
    int rc = 0, o;
    pmx_cli_opts_start();
    while ((o = pmx_cli_next_opt("mx", argc, argv, opts, &rc)) != -1) {
        if (o == '?') return rc;
        if (o == 'h') {
            fputs(mx_usage, stdout);
            return PMX_EXIT_OK;
        }
        if (o == 'j') json = true;
    }
    if (optind != argc - 1) return pmx_cli_usage("mx: expected one DOMAIN");
    char domain[256];
    const char *d = argv[optind];
    size_t n = strlen(d);
    if (n && d[n - 1] == '.') n--;
    if (n == 0 || n >= sizeof domain) return pmx_cli_error("mx: '%s' is not a domain name", d);
    for (size_t i = 0; i < n; i++) {
        char ch = d[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '-' || ch == '.' || ch == '_'))
            return pmx_cli_error("mx: '%s' is not a domain name", d);
        domain[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    domain[n] = '\0';
    if (pmx_cli_config(c) < 0) return PMX_EXIT_USER;
    const pmx_config_t *cfg = &c->cfg;

    char err[300];
    pmx_mx_net_t *nets;
    size_t nnets;
    if (pmx_mx_parse_networks(cfg->mx_allow_networks, &nets, &nnets, err, sizeof err) < 0)
        return pmx_cli_error("[mx] allow_networks: %s", err);
    uv_loop_t loop;
    uv_loop_init(&loop);
    pmx_resolver_t *res;
    if (pmx_resolver_new(&loop, cfg->mx_resolver, &res, err, sizeof err) < 0) {
        free(nets);
        uv_loop_close(&loop);
        return pmx_cli_error("%s", err);
    }
    pmx_mx_t *m = pmx_mx_new(&loop, res, cfg->mx_port, nets, nnets);
    free(nets);
    pmx_mx_route_t *route = NULL;
    pmx_mx_waiter_t *w;
    route = pmx_mx_lookup(m, domain, on_route, &route, &w);
    /* The resolver's poll handle is unref'ed; its query timers keep the loop up. */
    while (!route && uv_run(&loop, UV_RUN_ONCE)) {}
    pmx_mx_free(m);
    pmx_resolver_free(res);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!route) return pmx_cli_error("mx: no answer for %s", domain);
    pmx_shaping_t sh;
    if (pmx_shaping_load(cfg->mx_shaping_file, &sh, err, sizeof err) < 0) {
        pmx_mx_route_unref(route);
        return pmx_cli_error("[mx] shaping_file: %s", err);
    }
    rule_t ru = rule_of(route, &sh, cfg);
    int out = PMX_EXIT_OK;
    if (json) out = print_json(route, &ru);
    else print_text(route, &ru);
    pmx_shaping_free(&sh);
    pmx_mx_route_unref(route);
    return out;
}
