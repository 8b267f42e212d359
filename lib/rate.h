/*
 * The rate syntax of `postmux workspace set --rate` (postmux(1)): "N/s", "N/m",
 * "N/h" or "unlimited", N a positive decimal ("50", "0.5", "2.25"). One parser,
 * used by the CLI and by anything else that reads a rate from a person; and its
 * inverse, which prints a stored per-second rate in the unit it was most likely
 * given in ("100000/h" rather than "27.7778/s").
 */
#ifndef PMX_LIB_RATE_H
#define PMX_LIB_RATE_H
#include <stdbool.h>
#include <stddef.h>

/* Limits of N/unit after conversion to per second. */
#define PMX_RATE_MAX_PER_SECOND 1000000.0
/* N has at most this many digits after the point, and this many in all. */
#define PMX_RATE_MAX_DECIMALS   6
#define PMX_RATE_MAX_DIGITS     15

typedef struct {
    bool     unlimited;
    double   per_second;      /* 0 when unlimited */
    char     count[24];       /* N exactly as written (validated digits[.digits]) */
    unsigned unit_seconds;    /* 1, 60 or 3600; 0 when unlimited */
} pmx_rate_spec_t;

/*
 * Parses a rate. On success returns 0 and sets *unlimited and, when limited,
 * *per_second (> 0, ≤ PMX_RATE_MAX_PER_SECOND). Returns -1 on anything else
 * ("5/fortnight", "0/s", "-1/s", "1e3/s", " 5/s", "5/S"); outputs untouched.
 */
int pmx_rate_spec_parse(const char *s, double *per_second, bool *unlimited);

/*
 * Same, keeping N and the unit apart, so that a caller with exact decimal
 * arithmetic (Postgres numeric: count::numeric / unit_seconds) keeps every
 * digit. 0, or -1 with *out untouched.
 */
int pmx_rate_spec_parse_ex(const char *s, pmx_rate_spec_t *out);

/*
 * Writes a per-second rate as "N/s", "N/m" or "N/h" — the first unit in which
 * it is a whole number (within rounding of a stored numeric), else "%g/s" —
 * or "unlimited" when unlimited. Always NUL-terminates out.
 */
void pmx_rate_spec_format(double per_second, bool unlimited, char *out, size_t outlen);

#endif
