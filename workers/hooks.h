/*
 * The worker hooks postmuxd runs in every worker (see workers/hooks.c).
 */
#ifndef PMX_WORKERS_HOOKS_H
#define PMX_WORKERS_HOOKS_H
#include "workers/worker.h"

const pmx_worker_hooks_t *pmx_worker_hooks(void);

#endif
