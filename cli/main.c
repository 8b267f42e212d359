/*
 * main() of `postmux`, the admin CLI: global options (-c FILE, --help), then
 * one verb group per file. See cli.h for the shared context and exit codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(pmx_cli_t *c, int argc, char **argv);
    const char *usage;
} verb_t;

static const verb_t verbs[] = {
    { "migrate",   pmx_cli_migrate,
      "migrate" },
    { "workspace", pmx_cli_workspace,
      "workspace create NAME [--industry I] [--website URL]\n"
      "  workspace list [--json] | show WS [--json]\n"
      "  workspace set WS [--name N] [--rate 50/s|3000/m|100000/h|unlimited] [--burst N]\n"
      "                   [--daily-quota N|none] [--test-mode on|off] [--catch-all ADDR|none]\n"
      "                   [--suspend|--resume] [--max-bounce-rate PCT|none|default]\n"
      "                   [--max-complaint-rate PCT|none|default]" },
    { "tester",    pmx_cli_tester,
      "tester add|remove WS ADDR\n"
      "  tester list WS [--json]" },
    { "domain",    pmx_cli_domain,
      "domain add WS DOMAIN [--selector S] [--algorithm rsa|ed25519|both] [--bits 2048]\n"
      "                     [--private-key FILE]\n"
      "  domain verify DOMAIN [--nameserver IP[:PORT]] [--skip-dns]\n"
      "  domain list [WS] [--json] | remove DOMAIN" },
    { "apikey",    pmx_cli_apikey,
      "apikey create (--workspace WS | --org) --name N [--scopes send,read]\n"
      "  apikey list [WS] [--json] | revoke ID" },
    { "send",      pmx_cli_send,
      "send --workspace WS --from A --to B [--cc C] [--bcc D] [--subject S] [--text T]\n"
      "       [--html H] [--raw FILE] [--reply-to A] [--header 'Name: value'] [--id ID]\n"
      "       [--metadata M] [--category C]" },
    { "webhook",   pmx_cli_webhook,
      "webhook add [--workspace WS] --url URL [--events message.sent,...]\n"
      "  webhook list [WS] [--json] | remove ID" },
    { "suppression", pmx_cli_suppression,
      "suppression list WS [--reason R] [--json]\n"
      "  suppression add WS ADDR [--scope C] [--reason R] [--detail TEXT]\n"
      "  suppression remove WS ADDR [--scope C]\n"
      "  suppression check WS ADDR [--category C]" },
    { "queue",     pmx_cli_queue,
      "queue [--workspace WS] [--json]" },
    { "audit",     pmx_cli_audit,
      "audit [--workspace WS] [--since 24h|7d|all] [--json]" },
    { "stats",     pmx_cli_stats,
      "stats [--workspace WS] [--since 24h|7d|all] [--json]" },
    { "doctor",    pmx_cli_doctor,
      "doctor" },
    { "feedback",  pmx_cli_feedback,
      "feedback parse [--rules FILE] [FILE|-]" },
    { "mx",        pmx_cli_mx,
      "mx DOMAIN [--json]" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: postmux [-c FILE] VERB ...\n\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %s\n", verbs[i].usage);
    fprintf(f, "\nThe config is FILE, else $POSTMUX_CONFIG, else /etc/postmux/postmux.conf.\n"
               "Exit status: 0 ok, 1 error, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    pmx_cli_t c;
    memset(&c, 0, sizeof c);
    c.config_path = pmx_config_default_path();

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) return pmx_cli_usage("%s needs a file", argv[i]);
            c.config_path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return PMX_EXIT_OK;
        } else {
            return pmx_cli_usage("unknown option %s", argv[i]);
        }
    }
    if (i >= argc) {
        usage(stderr);
        return PMX_EXIT_USAGE;
    }

    const verb_t *v = NULL;
    for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++)
        if (strcmp(argv[i], verbs[k].name) == 0) v = &verbs[k];
    if (!v) return pmx_cli_usage("unknown verb '%s'", argv[i]);

    int rc = v->run(&c, argc - i, argv + i);

    if (c.pg) PQfinish(c.pg);
    if (c.redis) redisFree(c.redis);
    if (c.cfg_loaded) pmx_config_free(&c.cfg);
    return rc;
}
