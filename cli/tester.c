/* PLACEHOLDER: replaced by the real verb group. */
#include "cli/cli.h"
int pmx_cli_tester(pmx_cli_t *c, int argc, char **argv) { (void)c; (void)argc; (void)argv; return pmx_cli_error("tester: not built yet"); }
