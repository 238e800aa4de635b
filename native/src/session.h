/*
 * A native TLS session as addon.c drives it (its uv handles, JavaScript callback, phase), shared with lane.c: the
 * transaction pool's native lane moves pooled servers between sessions and runs them.
 */
#ifndef PGTLS_SESSION_H
#define PGTLS_SESSION_H

#include <node_api.h>
#include <uv.h>

#include "engine.h"

struct lane;
struct lane_srv;

/* Event kinds passed as the first argument of the session callback. */
enum {
  EV_HANDSHAKE_OK = 1,
  EV_HANDSHAKE_FAIL = 2,
  EV_DATA = 3,
  EV_END = 4,
  EV_DRAIN = 5,
  EV_CLOSE = 6,
  EV_TX = 7,
  EV_PLAIN = 8, /* negotiation: the client's first bytes were not an SSLRequest alone; they are JavaScript's */
};

/* The transaction relay's watch on a pooled server's fd: one per relay, freed when libuv has closed it. */
typedef struct tpoll {
  uv_poll_t h; /* first: the uv_handle_t* of the close callback is this struct */
  struct session *s;
} tpoll;

typedef struct session {
  pgtls_conn c;
  napi_env env;
  napi_ref self; /* strong while the connection is open: the callback must stay reachable */
  napi_ref cb;
  napi_async_context actx;
  uv_poll_t cpoll, bpoll;
  int cpoll_on, bpoll_on;
  tpoll *tp; /* the transaction relay's server watch (PH_TX), or NULL */
  pgtls_conn *peer; /* PH_SPLICE_TLS: the backend's TLS connection, moved here from its session (upstream.h) */
  int tmask;
  int cmask, bmask;
  int open_handles; /* uv handles whose close callback has not run yet */
  int busy;         /* inside run(): JavaScript called from here must not re-enter it */
  int done;
  int destroy_req;
  int finalized;
  int drain_wanted;
  int end_emitted;
  int active;  /* ran since the last sweep */
  int trimmed; /* buffers given back by the sweep, nothing ran since */
  struct session *prev, *next; /* this thread's open sessions, for the idle sweep */
  struct session *soon_next;   /* in this thread's run-soon list (defer()) */
  int soon;
  /* The native lane of a transaction pool (lane.h): the lane this session relays in, the server it holds for the
   * current transaction (NULL between transactions), its GUC signature, and its place in the lane's wait queue. */
  struct lane *ln;
  struct lane_srv *srv;
  int gucid;
  int lane_ev;      /* a handback the lane decided for this session (TX_NEED_SERVER, TX_WAIT_TIMEOUT), run next */
  int waiting;      /* in the lane's wait queue */
  struct session *wnext;
  uint64_t wait_since; /* uv_now when it joined the queue */
  uint32_t txs;        /* transactions completed in the lane since JavaScript last heard from it */
  unsigned char *cmap; /* its named statements for the lane to rename (txrelay.h cmap), owned */
  size_t cmap_len;
} session;


/* addon.c: run the session now (from a poll callback), or on the next loop turn (from inside another session's run
 * or from JavaScript). */
void pgtls_session_run(session *s);
void pgtls_session_defer(session *s);
/* Call a JavaScript function with napi_make_callback (exceptions go to Node's uncaught handler). */
void pgtls_make_callback(napi_env env, napi_async_context actx, napi_ref fn, int argc, napi_value *argv,
                         napi_value *out);
napi_value pgtls_num(napi_env env, double v);
/* Return NULL with a JavaScript error when an N-API call fails (the N-API functions of every addon file). */
#define CHECK(call)                                                                                                   \
  do {                                                                                                                \
    if ((call) != napi_ok) {                                                                                          \
      napi_throw_error(env, "PGTLS_ERR_NATIVE", #call " failed");                                                   \
      return NULL;                                                                                                    \
    }                                                                                                                 \
  } while (0)

/* context-addon.c: an SSL_CTX as a JavaScript external (freed with it); NULL with PGTLS_ERR_TLS_CONFIG and `err`
 * thrown when `ctx` is NULL. Shared by createContext and createClientContext. */
napi_value pgtls_ctx_external(napi_env env, SSL_CTX *ctx, const char *err);

/* addon.c's session loop, for methods.c */
session *pgtls_session_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, int use);
void pgtls_session_teardown(session *s, const char *why);
void pgtls_session_kick(session *s);
void pgtls_session_interest(session *s, int want);
void pgtls_session_tx_unwatch(session *s);
int pgtls_dup_fd(napi_env env, napi_value v);
/* methods.c: registers write, setReading, end, splice, destroy, txRelay, txStop, dupFd, closeFd, upstreamBegin,
 * spliceTls. */
void pgtls_methods_define(napi_env env, napi_value exports);
/* context-addon.c: createContext(options). */
napi_value pgtls_create_context(napi_env env, napi_callback_info info);
/* A string property of an options object ("" when absent; NULL only when out of memory), and the finalizer of an
 * SSL_CTX external. */
char *pgtls_prop_string(napi_env env, napi_value obj, const char *name);
void pgtls_free_ctx(napi_env env, void *data, void *hint);
/* The session behind a JavaScript handle (a TypeError pending when it is not one). */
session *pgtls_session_unwrap(napi_env env, napi_value v);

#endif
