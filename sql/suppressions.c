/* The suppressions statements; see suppressions.h. */
#include "sql/suppressions.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

const char pmx_sql_suppressions_page[] =
    "SELECT workspace_id, scope, reason,"
    "       COALESCE(floor(extract(epoch FROM expires_at))::bigint, 0), address"
    "  FROM suppressions"
    " WHERE (expires_at IS NULL OR expires_at > now())"
    "   AND (workspace_id, address, scope) > ($1, $2, $3)"
    " ORDER BY workspace_id, address, scope"
    " LIMIT " STR(PMX_SQL_SUPPRESSIONS_PAGE_ROWS);
