/*
 * Logging: one line per event on stderr (journald picks it up), with key=value
 * fields after the message, e.g.
 *   pmx_log_info("relay deferred ws=%s msg=%s code=%d", ws, id, code);
 * Never pass secrets (keys, passwords, API keys) to these.
 */
#ifndef PMX_LIB_LOG_H
#define PMX_LIB_LOG_H

typedef enum { PMX_LOG_DEBUG = 0, PMX_LOG_INFO, PMX_LOG_WARN, PMX_LOG_ERROR } pmx_log_level_t;

void pmx_log_set_level(pmx_log_level_t level);
pmx_log_level_t pmx_log_get_level(void);
/* Parses debug|info|warn|error; returns 0 or -1. */
int  pmx_log_parse_level(const char *s, pmx_log_level_t *out);
/* A short tag printed in front of every line, e.g. "worker[1234]". */
void pmx_log_set_tag(const char *tag);

void pmx_log(pmx_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define pmx_log_debug(...) pmx_log(PMX_LOG_DEBUG, __VA_ARGS__)
#define pmx_log_info(...)  pmx_log(PMX_LOG_INFO, __VA_ARGS__)
#define pmx_log_warn(...)  pmx_log(PMX_LOG_WARN, __VA_ARGS__)
#define pmx_log_error(...) pmx_log(PMX_LOG_ERROR, __VA_ARGS__)
/* Logs at error level and exits 1: only before the service is up. */
void pmx_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
