/*
 * The bounce rules postmuxd classifies with (docs/feedback.md): the installed
 * PMX_SHAREDIR/bounce-rules.conf when it exists, so rules can be extended
 * without a rebuild, else the copy compiled into the binary. An installed file
 * that does not compile is reported and the compiled-in rules are used: a typo
 * in a data file must not stop delivery.
 */
#include "inbound/classify.h"

#include <stdio.h>
#include <unistd.h>

#include "lib/log.h"

#ifndef PMX_SHAREDIR
#define PMX_SHAREDIR "/usr/local/share/postmux"
#endif

pmx_fb_rules_t *pmx_fb_rules_installed(void)
{
    const char *path = PMX_SHAREDIR "/bounce-rules.conf";
    pmx_fb_rules_t *r = NULL;
    char err[512];
    if (access(path, R_OK) == 0) {
        if (pmx_fb_rules_load_file(path, &r, err, sizeof err) == 0) {
            pmx_log_info("bounce rules: %s", path);
            return r;
        }
        pmx_log_error("bounce rules: %s (using the compiled-in rules)", err);
    }
    return pmx_fb_rules_builtin();
}
