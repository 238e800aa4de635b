/*
 * The session methods JavaScript calls after accept() (src/tls/native.ts, src/tls/native-upstream.ts): write, read
 * control, end, the splices, the transaction relay, destroy. The session's loop (run, teardown, interest) is
 * addon.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "engine.h"
#include "lane.h"
#include "session.h"
#include "txrelay.h"
#include "upstream.h"

/* write(session, buffer) -> true while the backlog is under its cap (else a drain event follows) */
/* Optional Buffer argument i: its bytes, or NULL and 0 when absent or not a Buffer. */
static void buffer_arg(napi_env env, size_t argc, napi_value *argv, size_t i, void **p, size_t *n) {
  bool isbuf = false;
  if (argc > i && napi_is_buffer(env, argv[i], &isbuf) == napi_ok && isbuf) napi_get_buffer_info(env, argv[i], p, n);
}

static napi_value write_conn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], res;
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  void *data = NULL;
  size_t len = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  if (s->done || s->c.phase != PH_STREAM) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "the TLS session is not writable");
    return NULL;
  }
  int r = len ? pgtls_stream_write(&s->c, data, len) : 1;
  if (r < 0) {
    if (!s->busy) pgtls_session_teardown(s, "write failed");
    else s->destroy_req = 1;
    napi_get_boolean(env, true, &res);
    return res;
  }
  if (r == 0) {
    s->drain_wanted = 1;
    if (!s->busy) pgtls_session_interest(s, WANT_CW | (s->cmask & UV_READABLE ? WANT_CR : 0));
  }
  napi_get_boolean(env, r == 1, &res);
  return res;
}

/* setReading(session, bool) */
static napi_value set_reading(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  if (s->done || s->c.phase != PH_STREAM) return NULL;
  int was = s->c.reading;
  s->c.reading = on;
  if (on && !was && !s->busy) pgtls_session_kick(s);
  return NULL;
}

/* end(session): close_notify, then close once it is out. */
static napi_value end_conn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  if (s->done || s->c.phase != PH_STREAM) return NULL;
  pgtls_stream_end(&s->c);
  if (!s->busy) pgtls_session_kick(s);
  return NULL;
}

/* splice(session, backendFd, toBackend?, toClient?) */
static napi_value splice_conn(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  if (s->done || s->c.phase != PH_STREAM || s->c.closing) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "the TLS session cannot be spliced");
    return NULL;
  }
  void *tb = NULL, *tc = NULL;
  size_t tbl = 0, tcl = 0;
  buffer_arg(env, argc, argv, 2, &tb, &tbl);
  buffer_arg(env, argc, argv, 3, &tc, &tcl);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int bfd = pgtls_dup_fd(env, argv[1]);
  if (bfd < 0) return NULL;
  if (uv_poll_init(loop, &s->bpoll, bfd) != 0) {
    close(bfd);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "uv_poll_init failed");
    return NULL;
  }
  s->bpoll.data = s;
  s->bpoll_on = 1;
  s->c.reading = 0;
  if (pgtls_splice_start(&s->c, bfd, tb, tbl, tc, tcl) != 0) {
    if (s->c.bfd < 0) close(bfd);
    if (!s->busy) pgtls_session_teardown(s, "splice failed");
    else s->destroy_req = 1;
    return NULL;
  }
  if (!s->busy) pgtls_session_kick(s);
  return NULL;
}

/* txRelay(session, serverFd, clientBytes?, trackNames, sessionMode?): relay one stretch of a pooled session natively
 * (txrelay.h; sessionMode: session pooling, no transaction boundary); the session's callback gets EV_TX when control
 * comes back. The fd is JavaScript's (dupFd) and stays open. */
static napi_value tx_relay(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  if (s->done || s->c.phase != PH_STREAM || s->c.closing || s->end_emitted || s->tp) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "the TLS session cannot relay a transaction now");
    return NULL;
  }
  int32_t fd = -1;
  if (napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "PGTLS_ERR_NATIVE", "not a file descriptor");
    return NULL;
  }
  void *cl = NULL;
  size_t cll = 0;
  bool track = false, whole = false;
  buffer_arg(env, argc, argv, 2, &cl, &cll);
  if (argc > 3) napi_get_value_bool(env, argv[3], &track);
  if (argc > 4) napi_get_value_bool(env, argv[4], &whole);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  tpoll *t = calloc(1, sizeof *t);
  if (!t) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "out of memory");
    return NULL;
  }
  int rc = uv_poll_init(loop, &t->h, fd);
  if (rc != 0) {
    free(t);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", uv_strerror(rc));
    return NULL;
  }
  t->h.data = s;
  t->s = s;
  if (pgtls_tx_start(&s->c, fd, track, whole, cl, cll) != 0) {
    s->tp = t;
    pgtls_session_tx_unwatch(s);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "out of memory");
    return NULL;
  }
  s->tp = t;
  s->tmask = 0;
  if (!s->busy) pgtls_session_defer(s);
  return NULL;
}

/* txStop(session): abandon the transaction relay without a callback (the server went away under it). */
static napi_value tx_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  session *s = pgtls_session_args(env, info, &argc, argv, 0);
  if (!s) return NULL;
  if (s->done || s->c.phase != PH_TX) return NULL;
  pgtls_session_tx_unwatch(s);
  s->txs = 0;
  int id = s->ln ? lane_leave(s, 0) : 0;
  pgtls_tx_finish(&s->c);
  s->c.reading = 0;
  return pgtls_num(env, id);
}

/* dupFd(fd) -> a close-on-exec duplicate the caller owns (closeFd). */
static napi_value dup_fd_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int d = pgtls_dup_fd(env, argv[0]);
  if (d < 0) return NULL;
  return pgtls_num(env, d);
}

static napi_value close_fd_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd >= 0) close(fd);
  return NULL;
}

/* destroy(session): close now, without close_notify (the caller decided the connection is over). */
static napi_value destroy_conn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  if (s->busy) s->destroy_req = 1;
  else pgtls_session_teardown(s, "destroyed");
  return NULL;
}

/* upstreamBegin(session, servername): a session accept()ed on a client context (createClientContext) becomes the
 * connecting side of a TLS hop to the backend (upstream.h); its handshake starts on the next loop turn. */
static napi_value upstream_begin(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  char name[256] = "";
  size_t n = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[1], name, sizeof name, &n) != napi_ok) name[0] = 0;
  if (s->done || pgtls_upstream_setup(&s->c, name) != 0) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "the TLS session cannot connect");
    return NULL;
  }
  if (!s->busy) pgtls_session_kick(s);
  return NULL;
}

/* spliceTls(session, backendSession, toBackend?, toClient?): relay between a client session and a backend session
 * in C (upstream.h). The backend's TLS connection moves into this session (watched by bpoll on a dup of its fd) and
 * the backend session closes (EV_CLOSE); this session's EV_CLOSE ends the relay with both byte counts. */
static napi_value splice_tls(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  session *s = pgtls_session_args(env, info, &argc, argv, 1);
  if (!s) return NULL;
  session *b = argc > 1 ? pgtls_session_unwrap(env, argv[1]) : NULL;
  if (!b) return NULL;
  if (s->done || s->c.phase != PH_STREAM || s->c.closing || s->peer || s->bpoll_on || b == s || b->done || b->busy ||
      b->c.phase != PH_STREAM || b->c.closing || b->c.cfd < 0) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "the TLS sessions cannot be spliced");
    return NULL;
  }
  void *tb = NULL, *tc = NULL;
  size_t tbl = 0, tcl = 0;
  buffer_arg(env, argc, argv, 2, &tb, &tbl);
  buffer_arg(env, argc, argv, 3, &tc, &tcl);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  /* a new fd for the new poll: the backend session's poll is closed (and its epoll registration removed) by its
   * teardown below, before its own fd is closed */
  int fd = fcntl(b->c.cfd, F_DUPFD_CLOEXEC, 0);
  pgtls_conn *peer = fd >= 0 ? malloc(sizeof *peer) : NULL;
  if (!peer || uv_poll_init(loop, &s->bpoll, fd) != 0) {
    free(peer);
    if (fd >= 0) close(fd);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "could not take over the backend session");
    return NULL;
  }
  s->bpoll.data = s;
  s->bpoll_on = 1;
  pgtls_conn_move(peer, &b->c, fd);
  s->peer = peer;
  pgtls_session_teardown(b, "spliced");
  s->c.reading = 0;
  if (pgtls_tls_splice_start(&s->c, peer, tb, tbl, tc, tcl) != 0) {
    if (!s->busy) pgtls_session_teardown(s, "splice failed");
    else s->destroy_req = 1;
    return NULL;
  }
  if (!s->busy) pgtls_session_kick(s);
  return NULL;
}

void pgtls_methods_define(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"write", NULL, write_conn, NULL, NULL, NULL, napi_default, NULL},
      {"setReading", NULL, set_reading, NULL, NULL, NULL, napi_default, NULL},
      {"end", NULL, end_conn, NULL, NULL, NULL, napi_default, NULL},
      {"splice", NULL, splice_conn, NULL, NULL, NULL, napi_default, NULL},
      {"destroy", NULL, destroy_conn, NULL, NULL, NULL, napi_default, NULL},
      {"txRelay", NULL, tx_relay, NULL, NULL, NULL, napi_default, NULL},
      {"txStop", NULL, tx_stop, NULL, NULL, NULL, napi_default, NULL},
      {"dupFd", NULL, dup_fd_js, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd_js, NULL, NULL, NULL, napi_default, NULL},
      {"upstreamBegin", NULL, upstream_begin, NULL, NULL, NULL, napi_default, NULL},
      {"spliceTls", NULL, splice_tls, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
}
