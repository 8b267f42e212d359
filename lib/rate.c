/*
 * The rate syntax ("50/s", "3000/m", "100000/h", "unlimited"): see rate.h.
 * Strict on purpose: no spaces, no exponents, no signs, lowercase units, so a
 * typo is an error rather than a different rate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rate.h"

static const struct {
    char     unit;
    unsigned seconds;
} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 } };

int pmx_rate_spec_parse_ex(const char *s, pmx_rate_spec_t *out)
{
    if (!s) return -1;
    if (strcmp(s, "unlimited") == 0) {
        memset(out, 0, sizeof *out);
        out->unlimited = true;
        return 0;
    }

    /* N: digits, optionally '.' and 1..PMX_RATE_MAX_DECIMALS digits. */
    const char *p = s;
    size_t digits = 0, decimals = 0;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
    if (digits == 0) return -1;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') { p++; decimals++; }
        if (decimals == 0 || decimals > PMX_RATE_MAX_DECIMALS) return -1;
    }
    if (digits + decimals > PMX_RATE_MAX_DIGITS) return -1;
    size_t nlen = (size_t)(p - s);

    if (*p++ != '/') return -1;
    unsigned secs = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (*p == units[i].unit) secs = units[i].seconds;
    if (secs == 0 || p[1] != '\0') return -1;

    pmx_rate_spec_t r;
    memset(&r, 0, sizeof r);
    if (nlen >= sizeof r.count) return -1;
    memcpy(r.count, s, nlen);
    r.count[nlen] = '\0';
    double n = strtod(r.count, NULL);   /* syntax already checked */
    r.per_second = n / secs;
    if (!(r.per_second > 0) || r.per_second > PMX_RATE_MAX_PER_SECOND) return -1;
    r.unit_seconds = secs;
    *out = r;
    return 0;
}

int pmx_rate_spec_parse(const char *s, double *per_second, bool *unlimited)
{
    pmx_rate_spec_t r;
    if (pmx_rate_spec_parse_ex(s, &r) < 0) return -1;
    *unlimited = r.unlimited;
    if (!r.unlimited) *per_second = r.per_second;
    return 0;
}

/*
 * How many decimals (0..PMX_RATE_MAX_DECIMALS) v needs, or -1 when more. The
 * tolerance absorbs the last-digit error of a numeric read back as a double
 * (27.7777777777777778 * 3600 is 100000 to within 1e-11).
 */
static int decimals_needed(double v)
{
    double scale = 1;
    for (int d = 0; d <= PMX_RATE_MAX_DECIMALS; d++, scale *= 10) {
        double x = v * scale;
        if (fabs(x - nearbyint(x)) <= 1e-12 * fmax(1.0, fabs(x))) return d;
    }
    return -1;
}

void pmx_rate_spec_format(double per_second, bool unlimited, char *out, size_t outlen)
{
    if (outlen == 0) return;
    if (unlimited) {
        snprintf(out, outlen, "unlimited");
        return;
    }
    /* The unit in which the number is shortest; ties go to the smaller unit. */
    int best = -1, best_dec = PMX_RATE_MAX_DECIMALS + 1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        int d = decimals_needed(per_second * units[i].seconds);
        if (d >= 0 && d < best_dec) {
            best = (int)i;
            best_dec = d;
        }
    }
    if (best < 0) {
        snprintf(out, outlen, "%.6g/s", per_second);
        return;
    }
    double v = per_second * units[best].seconds;
    snprintf(out, outlen, "%.*f/%c", best_dec, v, units[best].unit);
}
