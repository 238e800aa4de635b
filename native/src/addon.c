/*
 * N-API surface of the native data plane. Everything here runs on Node's main thread: the connection's sockets are
 * watched with uv_poll on Node's own loop, and JavaScript is called back (napi_make_callback) only for the
 * handshake result, decrypted bytes during startup/authentication, drain, and the end of the connection.
 * Policy stays in TypeScript (src/tls/native.ts); this file only moves bytes and reports facts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "context.h"
#include "engine.h"
#include "lane.h"
#include "session.h"
#include "txrelay.h"
#include "upstream-addon.h"
#include "upstream.h"

/*
 * Per thread (each Node environment runs on its own thread, and a session only on its loop's): the decrypted-bytes
 * buffer of the stream phase (copied into a JavaScript Buffer at once), and the open sessions with the timer that
 * trims the idle ones. A session that saw no traffic for one to two sweep periods gives its buffers back
 * (pgtls_conn_trim): an idle TLS session then holds its SSL object and little else, while a busy relay never
 * allocates or frees per transaction.
 */
#ifndef PGTLS_SWEEP_MS
#define PGTLS_SWEEP_MS 1000 /* the ASan build trims every 20 ms, so its tests give back and take buffers often */
#endif
static __thread unsigned char rd[PGTLS_IOBUF];
static __thread session *open_sessions;
static __thread uv_timer_t *sweep_timer;
/* Sessions to run on the next loop turn without waiting for their fds (defer()), and the idle handle that runs them:
 * cheaper than kick()'s interest change, which costs epoll_ctl calls both ways. */
static __thread session *soon_list, *soon_run; /* waiting for the next turn; being run in this one */
static __thread uv_idle_t *soon_idle;

static void on_sweep(uv_timer_t *t) {
  (void)t;
  for (session *s = open_sessions; s; s = s->next) {
    if (s->done || s->busy || s->trimmed) continue;
    if (s->active) s->active = 0;
    else {
      pgtls_conn_trim(&s->c);
      if (s->peer) pgtls_conn_trim(s->peer);
      s->trimmed = 1;
    }
  }
}

static void free_timer(uv_handle_t *h) { free(h); }

static void sweep_cleanup(void *arg) {
  (void)arg;
  if (sweep_timer) uv_close((uv_handle_t *)sweep_timer, free_timer);
  sweep_timer = NULL;
}

static void track(napi_env env, uv_loop_t *loop, session *s) {
  s->next = open_sessions;
  if (open_sessions) open_sessions->prev = s;
  open_sessions = s;
  if (!sweep_timer) {
    uv_timer_t *t = malloc(sizeof *t);
    if (!t || uv_timer_init(loop, t) != 0) {
      free(t);
      return; /* no trimming: sessions keep their buffers, nothing else changes */
    }
    uv_unref((uv_handle_t *)t); /* never what keeps the process alive */
    sweep_timer = t;
    napi_add_env_cleanup_hook(env, sweep_cleanup, NULL);
  }
  if (!uv_is_active((uv_handle_t *)sweep_timer)) uv_timer_start(sweep_timer, on_sweep, PGTLS_SWEEP_MS, PGTLS_SWEEP_MS);
}

static void unsoon(session *s) {
  if (!s->soon) return;
  s->soon = 0;
  session **lists[2] = {&soon_list, &soon_run};
  for (int l = 0; l < 2; l++) {
    for (session **p = lists[l]; *p; p = &(*p)->soon_next) {
      if (*p == s) {
        *p = s->soon_next;
        s->soon_next = NULL;
        return;
      }
    }
  }
}

static void untrack(session *s) {
  unsoon(s);
  if (s->prev) s->prev->next = s->next;
  else if (open_sessions == s) open_sessions = s->next;
  else return; /* not in the list */
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  if (!open_sessions && sweep_timer) uv_timer_stop(sweep_timer);
}

static void maybe_free(session *s) {
  if (s->finalized && s->open_handles == 0 && s->done) free(s);
}

static void on_handle_closed(uv_handle_t *h) {
  session *s = h->data;
  s->open_handles--;
  maybe_free(s);
}

static void report_exception(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
}

/* Call the session's JavaScript callback; the result is written to *out when out is not NULL (inside the caller's
 * handle scope). */
void pgtls_make_callback(napi_env env, napi_async_context actx, napi_ref fn, int argc, napi_value *argv,
                         napi_value *out) {
  napi_value cb, recv, result = NULL;
  if (!fn || napi_get_reference_value(env, fn, &cb) != napi_ok || !cb) return;
  napi_get_global(env, &recv); /* napi_make_callback wants an object receiver */
  if (napi_make_callback(env, actx, recv, cb, (size_t)argc, argv, &result) != napi_ok) report_exception(env);
  if (out) *out = result;
}

static void emit(session *s, int argc, napi_value *argv, napi_value *out) {
  pgtls_make_callback(s->env, s->actx, s->cb, argc, argv, out);
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

napi_value pgtls_num(napi_env env, double v) { return num(env, v); }

static napi_value str(napi_env env, const char *v) {
  napi_value r;
  if (!v) {
    napi_get_undefined(env, &r);
    return r;
  }
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &r);
  return r;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void set_interest(session *s, int want) {
  if (s->done) return;
  int cm = ((want & WANT_CR) ? UV_READABLE : 0) | ((want & WANT_CW) ? UV_WRITABLE : 0);
  if (s->cpoll_on && cm != s->cmask) {
    if (cm) uv_poll_start(&s->cpoll, cm, on_poll);
    else uv_poll_stop(&s->cpoll);
    s->cmask = cm;
  }
  int bm = ((want & WANT_BR) ? UV_READABLE : 0) | ((want & WANT_BW) ? UV_WRITABLE : 0);
  if (s->srv) lane_srv_interest(s->srv, want);
  if (s->tp && bm != s->tmask) {
    if (bm) uv_poll_start(&s->tp->h, bm, on_poll);
    else uv_poll_stop(&s->tp->h);
    s->tmask = bm;
  }
  if (s->bpoll_on && bm != s->bmask) {
    if (bm) uv_poll_start(&s->bpoll, bm, on_poll);
    else uv_poll_stop(&s->bpoll);
    s->bmask = bm;
  }
}

/* Run again on the next loop turn, outside any JavaScript frame: a writable socket reports at once. */
static void kick(session *s) {
  if (s->done) return;
  int want = (s->cmask & UV_READABLE ? WANT_CR : 0) | WANT_CW;
  if (s->bpoll_on) want |= (s->bmask & UV_READABLE ? WANT_BR : 0) | WANT_BW;
  if (s->tp) want |= (s->tmask & UV_READABLE ? WANT_BR : 0) | WANT_BW;
  if (s->srv) want |= (s->srv->mask & UV_READABLE ? WANT_BR : 0) | WANT_BW;
  set_interest(s, want);
}

static void on_tpoll_closed(uv_handle_t *h) {
  tpoll *t = (tpoll *)h;
  session *s = t->s;
  free(t);
  s->open_handles--;
  maybe_free(s);
}

/* Stop watching the pooled server's fd (it stays open: JavaScript's ServerConnection owns it). */
static void tx_unwatch(session *s) {
  if (!s->tp) return;
  uv_close((uv_handle_t *)&s->tp->h, on_tpoll_closed);
  s->open_handles++;
  s->tp = NULL;
  s->tmask = 0;
}

static napi_value buf_or_undef(napi_env env, const unsigned char *p, size_t n) {
  napi_value v;
  void *data;
  if (n == 0 || napi_create_buffer_copy(env, n, p, &data, &v) != napi_ok) napi_get_undefined(env, &v);
  return v;
}

/*
 * The transaction relay handed back: back to the stream phase (reading, as before the relay) and tell JavaScript
 * why, with what neither direction has processed: client bytes from the next unframed message, client bytes framed
 * but not yet written to the server, server bytes from the next unframed message, the requests still unanswered
 * (kinds, oldest first), the last ReadyForQuery status, the bytes read, and whether it stopped inside a message.
 */
static void tx_handback(session *s) {
  pgtls_conn *c = &s->c;
  pgtls_tx *t = c->tx;
  tx_unwatch(s);
  double txs = s->txs;
  s->txs = 0;
  int server_id = s->ln ? lane_leave(s, 0) : 0; /* the server, if it holds one, is JavaScript's again */
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  unsigned char kinds[PGTLS_TXQ_CAP];
  for (unsigned i = 0; i < t->qn; i++) kinds[i] = t->q[(t->qh + i) % PGTLS_TXQ_CAP];
  napi_value q;
  napi_create_string_latin1(env, (const char *)kinds, t->qn, &q);
  const unsigned char *up = c->up ? c->up : t->dn; /* no client buffer (trimmed while empty): nothing to return */
  size_t scan = c->up ? t->up_scan : 0, off = c->up ? c->up_off : 0, len = c->up ? c->up_len : 0;
  napi_value mid;
  napi_get_boolean(env, t->mid != 0, &mid);
  /* positional (named properties cost ~19k instructions per handback: each name is internalized again) */
  napi_value argv[12] = {num(env, EV_TX),
                         num(env, t->reason),
                         buf_or_undef(env, up + scan, len - scan),
                         buf_or_undef(env, up + off, scan - off),
                         buf_or_undef(env, t->dn + t->dn_scan, t->dn_len - t->dn_scan),
                         q,
                         num(env, t->status),
                         num(env, (double)t->from_client),
                         num(env, (double)t->from_server),
                         mid,
                         num(env, server_id),
                         num(env, txs)};
  pgtls_tx_finish(c);
  c->reading = 1; /* the stream's reader was waiting when the relay started (JavaScript checks) */
  emit(s, 12, argv, NULL);
  napi_close_handle_scope(env, scope);
}

static void run(session *s);

void pgtls_session_run(session *s) { run(s); }

static void on_soon(uv_idle_t *h) {
  uv_idle_stop(h);
  soon_run = soon_list; /* sessions deferred while these run wait for the next turn */
  soon_list = NULL;
  while (soon_run) {
    session *s = soon_run;
    soon_run = s->soon_next;
    s->soon_next = NULL;
    s->soon = 0;
    run(s);
  }
}

static void free_idle(uv_handle_t *h) { free(h); }

static void soon_cleanup(void *arg) {
  (void)arg;
  if (soon_idle) uv_close((uv_handle_t *)soon_idle, free_idle);
  soon_idle = NULL;
}

/* Run the session on the next loop turn (after JavaScript returned), without touching its fds' interest. */
static void defer(session *s) {
  if (s->done || s->soon) return;
  if (!soon_idle) {
    uv_loop_t *loop;
    uv_idle_t *h = malloc(sizeof *h);
    if (!h || napi_get_uv_event_loop(s->env, &loop) != napi_ok || uv_idle_init(loop, h) != 0) {
      free(h);
      kick(s);
      return;
    }
    uv_unref((uv_handle_t *)h);
    soon_idle = h;
    napi_add_env_cleanup_hook(s->env, soon_cleanup, NULL);
  }
  s->soon = 1;
  s->soon_next = soon_list;
  soon_list = s;
  uv_idle_start(soon_idle, on_soon);
}

void pgtls_session_defer(session *s) { defer(s); }

/* The TLS<->TLS relay's backend connection (its fd's poll is bpoll, closed before this). */
static void free_peer(session *s) {
  if (!s->peer) return;
  pgtls_conn_free(s->peer);
  free(s->peer);
  s->peer = NULL;
}

/* End of the connection: stop watching, close our fds, tell JavaScript once, let the wrapper be collected. */
static void teardown(session *s, const char *why) {
  if (s->done) return;
  s->done = 1;
  untrack(s);
  napi_env env = s->env;
  if (s->cpoll_on) {
    uv_close((uv_handle_t *)&s->cpoll, on_handle_closed);
    s->open_handles++;
    s->cpoll_on = 0;
  }
  if (s->bpoll_on) {
    uv_close((uv_handle_t *)&s->bpoll, on_handle_closed);
    s->open_handles++;
    s->bpoll_on = 0;
  }
  tx_unwatch(s);
  if (s->ln) lane_leave(s, 1); /* a server it held mid-transaction is dirty: the pool is told */
  double fc = (double)s->c.from_client, fb = (double)s->c.from_backend;
  char reason[sizeof s->c.reason];
  memcpy(reason, s->c.reason, sizeof reason);
  pgtls_conn_free(&s->c); /* closes the dups; the original fds belong to the JavaScript sockets */
  free_peer(s);
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value argv[4] = {num(env, EV_CLOSE), num(env, fc), num(env, fb), str(env, reason[0] ? reason : why)};
    emit(s, 4, argv, NULL);
    napi_close_handle_scope(env, scope);
  }
  if (s->cb) napi_delete_reference(env, s->cb);
  s->cb = NULL;
  if (s->actx) napi_async_destroy(env, s->actx);
  s->actx = NULL;
  uint32_t rc;
  if (s->self) napi_reference_unref(env, s->self, &rc);
}

static napi_value facts_object(session *s) {
  napi_env env = s->env;
  SSL *ssl = s->c.ssl;
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "version", str(env, SSL_get_version(ssl)));
  const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
  int alg_bits = 0;
  if (ci) SSL_CIPHER_get_bits(ci, &alg_bits);
  napi_set_named_property(env, o, "cipher", str(env, ci ? SSL_CIPHER_get_name(ci) : ""));
  napi_set_named_property(env, o, "bits", num(env, alg_bits));
  int nid = SSL_get_negotiated_group(ssl);
  if (nid > 0 && !(nid & TLSEXT_nid_unknown)) {
    const char *g = OBJ_nid2sn(nid);
    if (g) napi_set_named_property(env, o, "group", str(env, g));
  }
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni) napi_set_named_property(env, o, "sni", str(env, sni));
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn && alpn_len) {
    napi_value a;
    napi_create_string_latin1(env, (const char *)alpn, alpn_len, &a);
    napi_set_named_property(env, o, "alpn", a);
  }
  X509 *peer = SSL_get1_peer_certificate(ssl);
  if (peer) {
    int n = i2d_X509(peer, NULL);
    if (n > 0) {
      void *data;
      napi_value buf;
      if (napi_create_buffer(env, (size_t)n, &data, &buf) == napi_ok) {
        unsigned char *p = data;
        i2d_X509(peer, &p);
        napi_set_named_property(env, o, "peerCertificate", buf);
      }
    }
    long vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK) napi_set_named_property(env, o, "peerVerifyError", str(env, X509_verify_cert_error_string(vr)));
    X509_free(peer);
  }
  if (!SSL_is_server(ssl)) pgtls_upstream_facts(env, ssl, o); /* a backend session (upstreamBegin) */
  return o;
}

/* Emits one chunk (or the end) of decrypted bytes; returns whether JavaScript wants more now. */
static void run_stream(session *s, int *want) {
  *want = 0;
  for (int i = 0; i < 16 && !s->done && !s->destroy_req && s->c.phase == PH_STREAM; i++) {
    if (!s->c.reading || s->end_emitted) break;
    int w = 0;
    long n = pgtls_stream_read(&s->c, rd, sizeof rd, &w);
    if (n == 0) {
      *want |= w;
      break;
    }
    napi_env env = s->env;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    if (n > 0) {
      napi_value buf, res = NULL;
      void *data;
      napi_create_buffer_copy(env, (size_t)n, rd, &data, &buf);
      napi_value argv[2] = {num(env, EV_DATA), buf};
      emit(s, 2, argv, &res);
      bool more = false;
      if (res) napi_get_value_bool(env, res, &more);
      s->c.reading = more ? s->c.reading : 0;
    } else {
      s->end_emitted = 1;
      napi_value argv[2] = {num(env, EV_END), str(env, s->c.reason[0] ? s->c.reason : NULL)};
      emit(s, 2, argv, NULL);
    }
    napi_close_handle_scope(env, scope);
  }
}

static void run(session *s) {
  if (s->busy || s->done) return;
  s->busy = 1;
  s->active = 1;
  s->trimmed = 0;
  int want = 0, settled = 0;
  /* JavaScript called from here may move the session to another phase (a transaction relay started on decrypted
   * bytes, or handed back): the new phase runs in the same call, a bounded number of times. */
  for (int round = 0; round < 4 && !s->done && !s->destroy_req; round++) {
    int phase0 = s->c.phase;
    want = 0;
    if (s->c.phase == PH_NEGOTIATE && pgtls_negotiate_step(&s->c, &want) == 2) {
      /* Not an SSLRequest alone: the bytes go back to JavaScript, which reads on with Node's socket (the session
       * ends here; its EV_CLOSE follows and is ignored). */
      napi_env env = s->env;
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      napi_value argv[2] = {num(env, EV_PLAIN), buf_or_undef(env, s->c.in.p + s->c.in.off, s->c.in.len - s->c.in.off)};
      emit(s, 2, argv, NULL);
      napi_close_handle_scope(env, scope);
      s->destroy_req = 1;
    }
    if (s->c.phase == PH_HANDSHAKE && !s->destroy_req) {
      int r = pgtls_handshake_step(&s->c, &want);
      if (r != 0) {
        napi_env env = s->env;
        napi_handle_scope scope;
        napi_open_handle_scope(env, &scope);
        if (r == 1) {
          napi_value argv[2] = {num(env, EV_HANDSHAKE_OK), facts_object(s)};
          emit(s, 2, argv, NULL);
        } else {
          napi_value argv[2] = {num(env, EV_HANDSHAKE_FAIL), str(env, s->c.reason)};
          emit(s, 2, argv, NULL);
          s->destroy_req = 1;
        }
        napi_close_handle_scope(env, scope);
      }
    }
    if (s->c.phase == PH_STREAM && !s->destroy_req) {
      run_stream(s, &want);
      if (s->c.phase != PH_STREAM) continue;
      int fl = pgtls_flush(&s->c);
      if (fl > 0) want |= WANT_CW;
      if (s->c.c_wr_err) s->destroy_req = 1;
      if (s->c.closing && pgtls_out_pending(&s->c) == 0) s->destroy_req = 1;
      if (s->c.reading && !s->end_emitted && !s->c.c_rd_eof) want |= WANT_CR;
      if (s->drain_wanted && pgtls_out_pending(&s->c) < PGTLS_CIPHER_CAP && !s->destroy_req) {
        s->drain_wanted = 0;
        napi_handle_scope scope;
        napi_open_handle_scope(s->env, &scope);
        napi_value argv[1] = {num(s->env, EV_DRAIN)};
        emit(s, 1, argv, NULL);
        napi_close_handle_scope(s->env, scope);
      }
    } else if (s->c.phase == PH_SPLICE && !s->destroy_req) {
      if (pgtls_splice_pump(&s->c, &want) == 1) s->destroy_req = 1;
    } else if (s->c.phase == PH_SPLICE_TLS && !s->destroy_req) {
      if (pgtls_tls_splice_pump(&s->c, s->peer, &want) == 1) s->destroy_req = 1;
    } else if (s->c.phase == PH_TX && !s->destroy_req) {
      /* In a lane the session moves between transactions (no server) and relaying (a server) without JavaScript;
       * a bounded number of moves per run, then the next loop turn. */
      int handed = 0, steps = 0;
      for (; steps < 8; steps++) {
        if (s->ln && !s->srv) {
          int r = lane_idle_step(s, &want);
          if (r == 2) continue;
          if (r == 1) handed = 1;
          break;
        }
        if (pgtls_tx_pump(&s->c, &want) == 1) {
          if (s->c.tx->reason == TX_BOUNDARY && lane_release(s)) continue;
          handed = 1;
        }
        break;
      }
      if (handed) {
        tx_handback(s);
        continue;
      }
      if (steps == 8) want |= WANT_CW | (s->srv ? WANT_BW : 0); /* come back on the next turn */
    }
    if (s->c.phase == phase0 || (phase0 == PH_HANDSHAKE && s->c.phase == PH_STREAM)) {
      settled = 1;
      break;
    }
  }
  s->busy = 0;
  if (s->destroy_req) teardown(s, "");
  else if (s->c.phase == PH_TX && !s->tp && !s->ln) teardown(s, "transaction relay lost its server watch");
  else if (settled) set_interest(s, want);
  else defer(s); /* the phase changed on the last round: run it on the next loop turn */
}

static void on_poll(uv_poll_t *h, int status, int events) {
  session *s = h->data;
  if (s->done) return;
  int is_client = h == &s->cpoll;
  if (status < 0) {
    snprintf(s->c.reason, sizeof s->c.reason, "%s", uv_strerror(status));
    if (!s->busy) teardown(s, "");
    return;
  }
  if (events & (UV_READABLE | UV_DISCONNECT)) {
    if (is_client) s->c.c_readable = 1;
    else s->c.b_readable = 1;
  }
  run(s);
}

static void finalize_session(napi_env env, void *data, void *hint) {
  (void)hint;
  session *s = data;
  if (s->self) napi_delete_reference(env, s->self);
  s->self = NULL;
  s->finalized = 1;
  if (!s->done) {
    /* Unreachable while open (the strong reference), kept for safety: stop and close without JavaScript. */
    s->done = 1;
    untrack(s);
    if (s->cpoll_on) uv_close((uv_handle_t *)&s->cpoll, on_handle_closed), s->open_handles++;
    if (s->bpoll_on) uv_close((uv_handle_t *)&s->bpoll, on_handle_closed), s->open_handles++;
    s->cpoll_on = s->bpoll_on = 0;
    pgtls_conn_free(&s->c);
    free_peer(s);
  }
  maybe_free(s);
}


static session *unwrap(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_unwrap(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "PGTLS_ERR_NATIVE", "not a native TLS session");
    return NULL;
  }
  return p;
}

session *pgtls_session_unwrap(napi_env env, napi_value v) { return unwrap(env, v); }

/* The start of every session method: its arguments (up to *argc), the session in argv[0]. `use`: a call that
 * works the session marks it in use, so the idle sweep keeps (or brings back) its buffers. NULL with a JavaScript
 * exception pending. */
static session *session_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, int use) {
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "napi_get_cb_info failed");
    return NULL;
  }
  session *s = unwrap(env, argv[0]);
  if (s && use) {
    s->active = 1;
    s->trimmed = 0;
  }
  return s;
}

static int dup_fd(napi_env env, napi_value v) {
  int32_t fd = -1;
  if (napi_get_value_int32(env, v, &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "PGTLS_ERR_NATIVE", "not a file descriptor");
    return -1;
  }
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) napi_throw_error(env, "PGTLS_ERR_NATIVE", strerror(errno));
  return d;
}

/*
 * ---- accept(context, fd, initial, callback[, negotiate]) -> session ----
 * negotiate: the connection is fresh; answer an SSLRequest alone with 'S' before the handshake, and give anything
 * else back (EV_PLAIN) — see pgtls_negotiate_step.
 */
static napi_value accept_conn(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  SSL_CTX *ctx = NULL;
  CHECK(napi_get_value_external(env, argv[0], (void **)&ctx));
  void *init = NULL;
  size_t init_len = 0;
  bool isbuf = false;
  napi_is_buffer(env, argv[2], &isbuf);
  if (isbuf) napi_get_buffer_info(env, argv[2], &init, &init_len);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int fd = dup_fd(env, argv[1]);
  if (fd < 0) return NULL;
  session *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "out of memory");
    return NULL;
  }
  s->env = env;
  if (pgtls_conn_init(&s->c, ctx, fd, init, init_len) != 0) {
    pgtls_conn_free(&s->c);
    free(s);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "could not create SSL connection");
    return NULL;
  }
  if (uv_poll_init(loop, &s->cpoll, fd) != 0) {
    pgtls_conn_free(&s->c);
    free(s);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "uv_poll_init failed");
    return NULL;
  }
  s->cpoll.data = s;
  s->cpoll_on = 1;
  s->active = 1;
  bool negotiate = false;
  if (argc >= 5) napi_get_value_bool(env, argv[4], &negotiate);
  if (negotiate) s->c.phase = PH_NEGOTIATE;
  track(env, loop, s);
  napi_value obj, name;
  napi_create_object(env, &obj);
  napi_create_reference(env, argv[3], 1, &s->cb);
  napi_create_string_utf8(env, "pgtls:native-tls", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, obj, name, &s->actx);
  napi_wrap(env, obj, s, finalize_session, NULL, &s->self);
  napi_reference_ref(env, s->self, NULL);
  /* The handshake starts on the next loop turn (never inside this call): initial bytes may already suffice. */
  set_interest(s, WANT_CR | (init_len ? WANT_CW : 0));
  return obj;
}

/* Shared with methods.c (the session methods JavaScript calls after accept). */
session *pgtls_session_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, int use) {
  return session_args(env, info, argc, argv, use);
}
void pgtls_session_teardown(session *s, const char *why) { teardown(s, why); }
void pgtls_session_kick(session *s) { kick(s); }
void pgtls_session_interest(session *s, int want) { set_interest(s, want); }
void pgtls_session_tx_unwatch(session *s) { tx_unwatch(s); }
int pgtls_dup_fd(napi_env env, napi_value v) { return dup_fd(env, v); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"createContext", NULL, pgtls_create_context, NULL, NULL, NULL, napi_default, NULL},
      {"accept", NULL, accept_conn, NULL, NULL, NULL, napi_default, NULL},
      {"createClientContext", NULL, pgtls_create_client_context, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  pgtls_methods_define(env, exports);
  lane_define(env, exports);
  napi_value v;
  napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "openssl", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
