/* PLACEHOLDER until the config parser lands. */
#include <stdio.h>
#include <stdlib.h>
#include "daemon/config.h"
const char *pmx_config_default_path(void) { const char *e = getenv("POSTMUX_CONFIG"); return e && *e ? e : "/etc/postmux/postmux.conf"; }
int pmx_config_load(const char *path, pmx_config_t *out, char *err, size_t errlen) { (void)out; snprintf(err, errlen, "%s: config parser not built yet", path); return -1; }
void pmx_config_free(pmx_config_t *cfg) { (void)cfg; }
int pmx_config_read_secret(const char *path, char **out, size_t *outlen, char *err, size_t errlen) { (void)out; (void)outlen; snprintf(err, errlen, "%s: not built", path); return -1; }
