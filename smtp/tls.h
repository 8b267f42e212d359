/*
 * TLS for SMTP over libuv: a TCP stream that starts in clear text and can be
 * switched to TLS (STARTTLS, or at once for implicit TLS on port 465), with
 * OpenSSL running over memory BIOs so that libuv keeps doing all the socket
 * I/O on the loop. The same stream serves the relay client (connect, verify the
 * server's certificate and name) and the submission server (accept, present a
 * certificate): only the context and start call differ.
 *
 * Ownership and callbacks:
 * - A stream is created with pmx_smtp_stream_new and owned by its creator until
 *   pmx_smtp_stream_close; from then on it owns itself and frees itself after
 *   delivering PMX_SMTP_STREAM_CLOSED, which is always the last callback.
 * - Callbacks run only from the libuv loop, never from inside a pmx_smtp_stream_*
 *   call, so an owner never re-enters itself. A callback may call any function
 *   here, including pmx_smtp_stream_close (no data or event but CLOSED follows).
 * - Data handed to on_data is valid only during the call.
 * - pmx_smtp_stream_write copies the bytes (into the pending output, or through
 *   SSL_write), so the caller's buffer is free again on return.
 * - A TLS context may be freed while streams still use it (OpenSSL counts
 *   references to the SSL_CTX).
 */
#ifndef PMX_SMTP_TLS_H
#define PMX_SMTP_TLS_H
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

/* How a client session protects its connection: clear text, STARTTLS after
 * EHLO, or TLS from the first byte (implicit, port 465); OPPORTUNISTIC (direct
 * delivery to MX hosts): STARTTLS when the server offers it, clear text only
 * when it does not. */
typedef enum { PMX_TLS_NONE = 0, PMX_TLS_STARTTLS, PMX_TLS_IMPLICIT,
               PMX_TLS_OPPORTUNISTIC } pmx_tls_mode_t;

typedef struct pmx_smtp_tls_ctx pmx_smtp_tls_ctx_t;

/*
 * A client context: TLS 1.2 or newer; with verify, the peer's chain must
 * verify against the system store plus ca_file (NULL or "" for none) and the
 * certificate must match the name given to pmx_smtp_stream_start_tls.
 * Returns 0, or -1 with a reason in err (e.g. an unreadable ca_file).
 */
int  pmx_smtp_tls_ctx_new_client(pmx_smtp_tls_ctx_t **out, bool verify, const char *ca_file,
                                 char *err, size_t errlen);
/* A server context presenting cert_file (PEM chain) with key_file. 0 or -1 + err. */
int  pmx_smtp_tls_ctx_new_server(pmx_smtp_tls_ctx_t **out, const char *cert_file,
                                 const char *key_file, char *err, size_t errlen);
void pmx_smtp_tls_ctx_free(pmx_smtp_tls_ctx_t *ctx);

typedef struct pmx_smtp_stream pmx_smtp_stream_t;

typedef enum {
    PMX_SMTP_STREAM_CONNECTED,   /* connect finished: status 0, or a negative uv error */
    PMX_SMTP_STREAM_HANDSHAKE,   /* TLS handshake finished: status 0, or -1 and a reason
                                    (certificate errors are named, e.g. "certificate
                                    verify failed: unable to get local issuer certificate") */
    PMX_SMTP_STREAM_DRAINED,     /* output that had to wait for the socket has now all
                                    reached the kernel (output that went out at once gives
                                    no event: check pmx_smtp_stream_pending) */
    PMX_SMTP_STREAM_EOF,         /* the peer closed (TCP FIN or TLS close_notify) */
    PMX_SMTP_STREAM_ERROR,       /* read, write or TLS error: status < 0, reason set */
    PMX_SMTP_STREAM_CLOSED,      /* after pmx_smtp_stream_close: the last callback */
} pmx_smtp_stream_event_t;

typedef struct {
    /* Plain text received (decrypted once TLS is up). */
    void (*on_data)(void *arg, const char *data, size_t n);
    /* reason is a short English text for HANDSHAKE/ERROR failures, else NULL. */
    void (*on_event)(void *arg, pmx_smtp_stream_event_t ev, int status, const char *reason);
} pmx_smtp_stream_cbs_t;

/* A new, unconnected stream on loop. cbs is copied. Never fails. */
pmx_smtp_stream_t *pmx_smtp_stream_new(uv_loop_t *loop, const pmx_smtp_stream_cbs_t *cbs, void *arg);
/* Binds the source address of a stream not yet connected (port 0: any). 0 or a uv error. */
int  pmx_smtp_stream_bind(pmx_smtp_stream_t *s, const struct sockaddr *addr);
/* Connects to addr (TCP_NODELAY); CONNECTED follows, then reading starts. 0 or a uv error. */
int  pmx_smtp_stream_connect(pmx_smtp_stream_t *s, const struct sockaddr *addr);
/* Accepts a pending connection of a listening uv_stream_t and starts reading. 0 or a uv error. */
int  pmx_smtp_stream_accept(pmx_smtp_stream_t *s, uv_stream_t *server);

/* The peer's address of a connected or accepted stream. 0 or a uv error. */
int  pmx_smtp_stream_peer(const pmx_smtp_stream_t *s, struct sockaddr_storage *out);

/*
 * Switches the stream to TLS. Client contexts need peer_name: the host name
 * sent as SNI and checked against the certificate (an IP literal is checked
 * against the certificate's IP addresses and sends no SNI). Server contexts
 * take NULL. Bytes received before this call were delivered as clear text; every
 * byte received after it is TLS. Data written while the handshake runs is
 * held and sent encrypted once it is done. HANDSHAKE follows. Returns 0, or -1
 * (and the reason in pmx_smtp_stream_reason).
 */
int  pmx_smtp_stream_start_tls(pmx_smtp_stream_t *s, pmx_smtp_tls_ctx_t *ctx, const char *peer_name);
bool pmx_smtp_stream_is_tls(const pmx_smtp_stream_t *s);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up, else "". Valid while the stream is. */
const char *pmx_smtp_stream_tls_desc(pmx_smtp_stream_t *s);

/*
 * Queues n bytes for the peer (encrypted when TLS is up). Returns 0, or a
 * negative error when the stream has failed or is closing (nothing queued).
 * The _secret variant wipes its clear-text copy once written (AUTH).
 */
int  pmx_smtp_stream_write(pmx_smtp_stream_t *s, const void *data, size_t n);
int  pmx_smtp_stream_write_secret(pmx_smtp_stream_t *s, const void *data, size_t n);
/*
 * The same for nv buffers in order, scatter/gather: without TLS they go to
 * the kernel in one writev straight from the caller's memory when nothing is
 * queued (only what it does not take is copied); with TLS, pieces under a
 * record's size are joined before SSL_write. The buffers may be reused as
 * soon as this returns.
 */
int  pmx_smtp_stream_writev(pmx_smtp_stream_t *s, const uv_buf_t *v, size_t nv);
/* Bytes queued and not yet handed to the kernel. */
size_t pmx_smtp_stream_pending(const pmx_smtp_stream_t *s);
/* The reason of the last failure (start_tls, handshake, error), or "". */
const char *pmx_smtp_stream_reason(const pmx_smtp_stream_t *s);

/*
 * Closes: sends TLS close_notify when it can without blocking, closes the
 * socket, drops unwritten data; CLOSED follows on a later loop turn. Safe to call
 * more than once and from any callback.
 */
void pmx_smtp_stream_close(pmx_smtp_stream_t *s);

#endif
