/* Line-oriented logging to stderr; see log.h. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pmx_log_level_t log_level = PMX_LOG_INFO;
static char log_tag[64] = "postmux";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void pmx_log_set_level(pmx_log_level_t level) { log_level = level; }
pmx_log_level_t pmx_log_get_level(void) { return log_level; }

int pmx_log_parse_level(const char *s, pmx_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (pmx_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void pmx_log_set_tag(const char *tag)
{
    snprintf(log_tag, sizeof log_tag, "%s", tag);
}

static void vlog(pmx_log_level_t level, const char *fmt, va_list ap)
{
    char line[4096];
    int n = snprintf(line, sizeof line, "%s %s: ", log_tag, level_names[level]);
    if (n < 0) return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    /* One event, one line: control characters from outside input are masked. */
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20) line[i] = '?';
    line[len++] = '\n';
    /* A single write keeps lines from several processes whole. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void pmx_log(pmx_log_level_t level, const char *fmt, ...)
{
    if (level < log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void pmx_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(PMX_LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(1);
}
