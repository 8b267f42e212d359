/*
 * main() of postmuxd: options, then either --check-config or the supervisor
 * (daemon/supervisor.h). postmuxd [-c FILE] [--check-config]
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "daemon/supervisor.h"
#include "workers/hooks.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: postmuxd [-c FILE] [--check-config]\n"
                 "  -c, --config FILE   config file (default $POSTMUX_CONFIG or "
                 "/etc/postmux/postmux.conf)\n"
                 "      --check-config  check the config and exit (0 = valid)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = NULL;
    int check = 0, c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "postmuxd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!path) path = pmx_config_default_path();

    if (check) {
        char err[1024];
        if (pmx_daemon_check_config(path, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        printf("%s: ok\n", path);
        return 0;
    }
    return pmx_daemon_run(path, pmx_worker_hooks());
}
