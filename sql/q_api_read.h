/*
 * The statements behind API v1's read endpoints (docs/http.md): a message
 * with its recipients, a page of events, a workspace's stats. Run by the
 * worker on its asynchronous connection (http/api_read.c). All parameters
 * are text; $1 is always the workspace id, so another workspace's rows are
 * never seen.
 */
#ifndef PMX_SQL_Q_API_READ_H
#define PMX_SQL_Q_API_READ_H

/* $1 ws, $2 the id POST /v1/emails returned (stream entry id) or a message
 * id. One row per recipient (one row with NULL recipient columns for a
 * message without any): see PMX_Q_MSG_*. No row: no such message. */
enum {
    PMX_Q_MSG_ID, PMX_Q_MSG_JOB, PMX_Q_MSG_CLIENT, PMX_Q_MSG_FROM, PMX_Q_MSG_SUBJECT,
    PMX_Q_MSG_CREATED, PMX_Q_MSG_ADDRESS, PMX_Q_MSG_STATUS, PMX_Q_MSG_ATTEMPTS,
    PMX_Q_MSG_RESPONSE, PMX_Q_MSG_CLASS, PMX_Q_MSG_UPDATED,
};
extern const char pmx_sql_api_message[];

/* $1 ws, $2 type or NULL, $3 since in ms or NULL, $4 after this event id or
 * NULL, $5 limit. Rows by id: id, type, message_id, job_id, recipient,
 * detail, created_at. */
extern const char pmx_sql_api_events[];

/* $1 ws, $2 since in ms or NULL (all time). Rows: since (NULL = all time),
 * until, kind, name, n — kind/name/n NULL in the one row of a workspace
 * without counts. The window starts on a whole UTC hour, as `postmux stats`. */
extern const char pmx_sql_api_stats[];

#endif
