/* The suppressions statements; see suppressions.h. */
#include "sql/suppressions.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

const char pmx_sql_suppressions_page[] =
    "SELECT workspace_id, scope, reason,"
    "       COALESCE(floor(extract(epoch FROM expires_at))::bigint, 0), address, id"
    "  FROM suppressions"
    " WHERE id > $1::bigint AND (expires_at IS NULL OR expires_at > now())"
    " ORDER BY id"
    " LIMIT " STR(PMX_SQL_SUPPRESSIONS_PAGE_ROWS);
