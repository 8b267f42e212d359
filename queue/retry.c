/*
 * The retry schedule's two Lua scripts and their C callers; see retry.h.
 *
 * The mover parses members in the jobcodec format ("PMXJ1\n" + netstrings
 * "<len>:<bytes>,") and validates every member completely before its XADD,
 * so a bad member never leaves a half-written entry. Redis does not roll a
 * script back when it fails half-way; each member's XADD and ZREM are next
 * to each other, so an error (a stream key of the wrong type) stops the
 * script between members, never inside one.
 */
#include "queue/retry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "queue/script.h"

/* Redis time in ms, inside a script. */
#define LUA_NOW \
    "local t = redis.call('TIME')\n" \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* KEYS: stream, retry. ARGV: group, entry id, delay ms, member. */
static pmx_queue_script_t defer_script = PMX_QUEUE_SCRIPT("retry_defer",
    "local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "if n == 1 then\n"
    LUA_NOW
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])\n"
    "  redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "end\n"
    "return n\n");

/* KEYS: retry, stream, dead. ARGV: limit, dead maxlen. */
static pmx_queue_script_t move_script = PMX_QUEUE_SCRIPT("retry_move",
    "local function parse(m)\n"
    "  if string.sub(m, 1, 6) ~= 'PMXJ1\\n' then return nil end\n"
    "  local out, pos, len = {}, 7, #m\n"
    "  while pos <= len do\n"
    "    local s, e, digits = string.find(m, '^(%d+):', pos)\n"
    "    if not s or #digits > 10 then return nil end\n"
    "    local vstart = e + 1\n"
    "    local vend = vstart + tonumber(digits) - 1\n"
    "    if vend + 1 > len or string.sub(m, vend + 1, vend + 1) ~= ',' then return nil end\n"
    "    out[#out + 1] = string.sub(m, vstart, vend)\n"
    "    if #out > 4000 then return nil end\n"
    "    pos = vend + 2\n"
    "  end\n"
    "  if #out == 0 or #out % 2 ~= 0 then return nil end\n"
    "  return out\n"
    "end\n"
    LUA_NOW
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))\n"
    "local moved, bad = 0, 0\n"
    "for _, m in ipairs(due) do\n"
    "  local f = parse(m)\n"
    "  if f then\n"
    "    redis.call('XADD', KEYS[2], '*', unpack(f))\n"
    "    moved = moved + 1\n"
    "  else\n"
    "    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', '_raw', m,\n"
    "               '_reason', 'retry_member_malformed')\n"
    "    bad = bad + 1\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "local left = redis.call('ZCARD', KEYS[1])\n"
    "local nxt = -1\n"
    "if left > 0 then\n"
    "  nxt = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])\n"
    "end\n"
    "return {moved, bad, left, nxt, now}\n");

int pmx_queue_retry_defer(pmx_redis_conn_t *rc, const char *stream, const char *retry_key,
                          const char *group, const char *entry_id, uint64_t delay_ms,
                          const char *member, size_t member_len,
                          redisCallbackFn *cb, void *privdata)
{
    char delay[24];
    snprintf(delay, sizeof delay, "%" PRIu64, delay_ms);
    const char *args[] = { stream, retry_key, group, entry_id, delay, member };
    size_t lens[] = { strlen(stream), strlen(retry_key), strlen(group), strlen(entry_id),
                      strlen(delay), member_len };
    return pmx_queue_script_run(rc, &defer_script, 2, 6, args, lens, cb, privdata);
}

int pmx_queue_retry_move(pmx_redis_conn_t *rc, const char *retry_key, const char *stream,
                         const char *dead, unsigned limit, redisCallbackFn *cb, void *privdata)
{
    char lim[16], maxlen[16];
    snprintf(lim, sizeof lim, "%u", limit ? limit : 1);
    snprintf(maxlen, sizeof maxlen, "%d", PMX_QUEUE_DEAD_MAXLEN);
    const char *args[] = { retry_key, stream, dead, lim, maxlen };
    return pmx_queue_script_run(rc, &move_script, 3, 5, args, NULL, cb, privdata);
}

int pmx_queue_retry_parse_move(const redisReply *r, pmx_queue_retry_moved_t *out,
                               char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "connection lost");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%.*s", (int)(r->len > 200 ? 200 : r->len), r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        snprintf(err, errlen, "unexpected reply to the retry mover");
        return -1;
    }
    long long *v[] = { &out->moved, &out->bad, &out->left, &out->next_due, &out->now };
    for (size_t i = 0; i < 5; i++) {
        if (!r->element[i] || r->element[i]->type != REDIS_REPLY_INTEGER) {
            snprintf(err, errlen, "unexpected reply to the retry mover");
            return -1;
        }
        *v[i] = r->element[i]->integer;
    }
    return 0;
}
