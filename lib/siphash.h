/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a fast keyed 64-bit hash. Used
 * where a table keyed by outside input must not be crowdable by someone who
 * picks the keys (the suppression list, inbound/suppress.h): with a random
 * key per process, nobody can aim two strings at one value.
 *
 * Written here rather than taken from OpenSSL: EVP_MAC's SipHash costs an
 * allocation and several indirect calls per hash, and this is called for every
 * recipient of every message. It is checked against the reference vectors of
 * the paper (tests/unit/test_siphash.c).
 */
#ifndef PMX_LIB_SIPHASH_H
#define PMX_LIB_SIPHASH_H
#include <stddef.h>
#include <stdint.h>

#define PMX_SIPHASH_KEY_LEN 16

/* The hash of n bytes at p under key k (16 bytes). */
uint64_t pmx_siphash(const uint8_t k[PMX_SIPHASH_KEY_LEN], const void *p, size_t n);

#endif
