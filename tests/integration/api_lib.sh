# Helpers for the API v1 tests (test_http.sh, test_http_api.sh, test_http_domains.sh);
# source after lib.sh and t_setup. Every request goes through tests/tools/api_check.py,
# which checks the answer against http/openapi.json.
#   api_listener_conf   one worker, the public listener on a free port (HPORT, its
#                       public_url), metrics on another (MPORT), no submission
#   api METHOD PATH [key=K ws=WS idem=I body=JSON bodyfile=F header=N:V]
#       sets T_RC and T_OUT = "STATUS\nBODY" (T_RC != 0: not as documented)
#   status / jbody      the status line / the JSON body of the last answer
#   jget EXPR           a Python expression over the body `d`
#   expect_api STATUS   documented, schema-valid, and that status
PY=${PY:-/usr/bin/python3}
API=$PMX_ROOT/tests/tools/api_check.py
SPEC=$PMX_ROOT/http/openapi.json
api_listener_conf() {
    HPORT=$(pmx_svc_free_port)
    MPORT=$(pmx_svc_free_port)
    t_conf_set daemon workers 1
    t_conf_set daemon shutdown_timeout 5s
    t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
    t_conf_set submission listen ""
    t_conf_set http listen "127.0.0.1:$HPORT"
    t_conf_set http public_url "http://127.0.0.1:$HPORT"
}
api() { t_run "$PY" "$API" "$HPORT" "$SPEC" "$@"; }
status() { printf '%s\n' "$T_OUT" | head -n 1; }
jbody() { printf '%s\n' "$T_OUT" | sed -n 2p; }
jget() { jbody | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
expect_api() {
    t_expect_rc 0 || { echo "# $T_ERR" >&2; return 1; }
    t_expect_eq "$(status)" "$1" "status"
}
