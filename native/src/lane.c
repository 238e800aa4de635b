/* The native lane of a transaction pool; see lane.h for what it decides and what stays JavaScript's. */
#include "lane.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "txrelay.h"

/* ---- references and the JavaScript callback ---- */

static void free_lane_timer(uv_handle_t *h) {
  lane *ln = h->data;
  free(h);
  free(ln);
}

static void lane_unref(lane *ln) {
  if (--ln->refs > 0) return;
  if (ln->timer) uv_close((uv_handle_t *)ln->timer, free_lane_timer); /* frees the lane after the timer */
  else free(ln);
}

static void lane_emit(lane *ln, int ev, int id) {
  if (!ln->cb) return;
  napi_env env = ln->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2] = {pgtls_num(env, ev), pgtls_num(env, id)};
  pgtls_make_callback(env, ln->actx, ln->cb, 2, argv, NULL);
  napi_close_handle_scope(env, scope);
}

/* ---- servers ---- */

static void on_srv_closed(uv_handle_t *h) {
  lane_srv *srv = (lane_srv *)h;
  lane *ln = srv->ln;
  free(srv->names);
  free(srv);
  lane_unref(ln);
}

static void unlink_idle(lane_srv *srv) {
  lane *ln = srv->ln;
  for (lane_srv **p = &ln->idle; *p; p = &(*p)->next_idle) {
    if (*p == srv) {
      *p = srv->next_idle;
      ln->n_idle--;
      break;
    }
  }
  srv->idle = 0;
  srv->next_idle = NULL;
}

/* The server leaves the lane (to JavaScript, or broken): its watch is closed, the fd stays JavaScript's. */
static void srv_detach(lane_srv *srv) {
  lane *ln = srv->ln;
  if (srv->idle) unlink_idle(srv);
  for (lane_srv **p = &ln->all; *p; p = &(*p)->next_all) {
    if (*p == srv) {
      *p = srv->next_all;
      ln->n_all--;
      break;
    }
  }
  if (srv->owner) {
    if (srv->owner->c.tx) srv->owner->c.tx->sset = NULL;
    srv->owner->srv = NULL;
    srv->owner = NULL;
  }
  uv_close((uv_handle_t *)&srv->h, on_srv_closed);
}

static lane_srv *find_srv(lane *ln, int id) {
  for (lane_srv *s = ln->all; s; s = s->next_all)
    if (s->id == id) return s;
  return NULL;
}

static void on_srv_poll(uv_poll_t *h, int status, int events) {
  lane_srv *srv = (lane_srv *)h;
  session *s = srv->owner;
  if (s) {
    /* an error is seen by the relay's next read or send on the fd */
    if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT))) s->c.b_readable = 1;
    pgtls_session_run(s);
    return;
  }
  /* An idle backend sends nothing unprompted except to end the session: the server is broken. */
  lane *ln = srv->ln;
  int id = srv->id;
  ln->refs++; /* the callback may drop JavaScript's last reference */
  srv_detach(srv);
  lane_emit(ln, 1, id);
  lane_unref(ln);
}

void lane_srv_interest(lane_srv *srv, int want) {
  int m = ((want & WANT_BR) ? UV_READABLE : 0) | ((want & WANT_BW) ? UV_WRITABLE : 0);
  if (m == srv->mask) return;
  if (m) uv_poll_start(&srv->h, m, on_srv_poll);
  else uv_poll_stop(&srv->h);
  srv->mask = m;
}

static void attach(session *s, lane_srv *srv) {
  srv->owner = s;
  s->srv = srv;
  pgtls_tx_attach(&s->c, srv->fd);
  s->c.tx->sset = srv->names;
  s->c.tx->sset_len = srv->names_len;
}

/* ---- the wait queue ---- */

static void arm_timer(lane *ln);

static void on_wait_timer(uv_timer_t *t) {
  lane *ln = t->data;
  uint64_t now = uv_now(ln->loop);
  while (ln->wq_head && now - ln->wq_head->wait_since >= ln->wait_timeout) {
    session *w = ln->wq_head;
    ln->wq_head = w->wnext;
    if (!ln->wq_head) ln->wq_tail = NULL;
    ln->n_wait--;
    w->waiting = 0;
    w->wnext = NULL;
    w->lane_ev = TX_WAIT_TIMEOUT;
    pgtls_session_defer(w);
  }
  arm_timer(ln);
}

static void arm_timer(lane *ln) {
  if (!ln->wait_timeout || !ln->wq_head) {
    if (ln->timer) uv_timer_stop(ln->timer);
    return;
  }
  if (!ln->timer) {
    uv_timer_t *t = malloc(sizeof *t);
    if (!t || uv_timer_init(ln->loop, t) != 0) {
      free(t);
      return; /* without a timer JavaScript's janitor cannot see these waits: laneSet kicks them instead */
    }
    t->data = ln;
    uv_unref((uv_handle_t *)t);
    ln->timer = t;
  }
  if (uv_is_active((uv_handle_t *)ln->timer)) return;
  uint64_t now = uv_now(ln->loop), since = ln->wq_head->wait_since;
  uint64_t left = now - since >= ln->wait_timeout ? 0 : ln->wait_timeout - (now - since);
  uv_timer_start(ln->timer, on_wait_timer, left + 1, 0);
}

static void enqueue(lane *ln, session *s) {
  s->waiting = 1;
  s->wnext = NULL;
  s->wait_since = uv_now(ln->loop);
  if (ln->wq_tail) ln->wq_tail->wnext = s;
  else ln->wq_head = s;
  ln->wq_tail = s;
  ln->n_wait++;
  ln->waits++;
  arm_timer(ln);
}

static void unwait(lane *ln, session *s) {
  if (!s->waiting) return;
  session *prev = NULL;
  for (session *w = ln->wq_head; w; prev = w, w = w->wnext) {
    if (w != s) continue;
    if (prev) prev->wnext = w->wnext;
    else ln->wq_head = w->wnext;
    if (ln->wq_tail == w) ln->wq_tail = prev;
    ln->n_wait--;
    break;
  }
  s->waiting = 0;
  s->wnext = NULL;
  if (ln->wq_head == NULL && ln->timer) uv_timer_stop(ln->timer);
}

/* Every waiting client goes to JavaScript (the pool can grow again, JavaScript has waiters, or the lane closes). */
static void kick_waiters(lane *ln) {
  while (ln->wq_head) {
    session *w = ln->wq_head;
    unwait(ln, w);
    w->lane_ev = TX_NEED_SERVER;
    pgtls_session_defer(w);
  }
}

/* ---- the per-transaction steps ---- */

static int past_lifetime(const lane_srv *srv, uint64_t now) { return srv->expires && now >= srv->expires; }

/* A server from the idle stack for `s`, or NULL (none, or the newest one needs JavaScript). */
static lane_srv *pick(lane *ln, session *s) {
  lane_srv *top = ln->idle;
  if (!top || ln->closed) return NULL;
  uint64_t now = uv_now(ln->loop);
  if (past_lifetime(top, now) || top->gucid != s->gucid) return NULL;
  if (ln->check_delay >= 0 && now - top->released >= (uint64_t)ln->check_delay) return NULL;
  unlink_idle(top);
  return top;
}

/* A server just released: to the first waiting client, else onto the idle stack. */
static void offer(lane *ln, lane_srv *srv) {
  session *w = ln->wq_head;
  if (w) {
    unwait(ln, w);
    if (w->gucid == srv->gucid) {
      attach(w, srv);
      ln->handoffs++;
    } else {
      w->lane_ev = TX_NEED_SERVER; /* JavaScript applies its GUCs (laneTake gives it this server) */
    }
    pgtls_session_defer(w);
    if (w->srv == srv) return;
  }
  srv->idle = 1;
  srv->next_idle = ln->idle;
  ln->idle = srv;
  ln->n_idle++;
  lane_srv_interest(srv, WANT_BR); /* watched while idle */
}

int lane_release(session *s) {
  lane *ln = s->ln;
  lane_srv *srv = s->srv;
  pgtls_conn *c = &s->c;
  pgtls_tx *t = c->tx;
  if (!ln || !srv || ln->closed) return 0;
  /* nothing of the next transaction may be half done: no server byte after the ReadyForQuery, no framed client
   * byte unsent */
  if (t->dn_scan != t->dn_len || t->s_rem || t->c_rem || c->up_off != t->up_scan) return 0;
  uint64_t now = uv_now(ln->loop);
  if (past_lifetime(srv, now)) return 0; /* JavaScript closes it */
  srv->owner = NULL;
  s->srv = NULL;
  srv->released = now;
  pgtls_tx_detach(c);
  t->sset = NULL;
  s->txs++;
  ln->boundaries++;
  if (ln->js_waiting) {
    /* Clients wait in JavaScript's queue: the server goes there (the client stays in the lane). */
    int id = srv->id;
    ln->refs++;
    srv_detach(srv);
    lane_emit(ln, 3, id);
    lane_unref(ln);
    return 1;
  }
  offer(ln, srv);
  return 1;
}

int lane_idle_step(session *s, int *want) {
  lane *ln = s->ln;
  pgtls_conn *c = &s->c;
  pgtls_tx *t = c->tx;
  *want = 0;
  if (s->lane_ev) {
    t->reason = s->lane_ev;
    s->lane_ev = 0;
    return 1;
  }
  ERR_clear_error();
  pgtls_tx_read_client(c);
  if (pgtls_out_pending(c) > 0 && pgtls_flush(c) > 0) *want |= WANT_CW;
  if (c->c_tls_eof || c->tls_fatal || c->c_wr_err) {
    unwait(ln, s);
    t->reason = TX_CLIENT_END;
    return 1;
  }
  size_t have = c->up ? c->up_len - c->up_off : 0;
  if (have > 0 && !s->waiting) {
    if (c->up[c->up_off] == 'X') { /* Terminate between transactions: JavaScript ends the session */
      t->reason = TX_CLIENT_MSG;
      return 1;
    }
    lane_srv *srv = pick(ln, s);
    if (srv) {
      attach(s, srv);
      return 2;
    }
    /* JavaScript's own waiters (js_waiting) are served first at the boundaries, but new ones wait here: once the
     * pool is full its queue drains and the lane's takes over. */
    if (ln->idle || !ln->full || ln->js_idle || ln->closed) {
      t->reason = TX_NEED_SERVER;
      return 1;
    }
    enqueue(ln, s);
  }
  /* while it waits the client may go on sending, up to the buffer (then it is not read) */
  if (!c->up || c->up_len < c->up_cap || c->up_off > 0) *want |= WANT_CR;
  return 0;
}

int lane_leave(session *s, int dirty) {
  lane *ln = s->ln;
  if (!ln) return 0;
  unwait(ln, s);
  int id = 0;
  lane_srv *srv = s->srv;
  if (srv) {
    id = srv->id;
    srv_detach(srv);
  }
  s->ln = NULL;
  s->srv = NULL;
  s->lane_ev = 0;
  free(s->cmap);
  s->cmap = NULL;
  s->cmap_len = 0;
  if (s->c.tx) s->c.tx->cmap = s->c.tx->sset = NULL;
  ln->refs++;
  if (dirty && id) lane_emit(ln, 2, id);
  ln->refs--; /* the session's; the temporary one above still holds the lane */
  lane_unref(ln);
  return id;
}

/* ---- N-API ---- */

#define THROW(msg)                                                                                                    \
  do {                                                                                                                \
    napi_throw_error(env, "PGTLS_ERR_NATIVE", msg);                                                                   \
    return NULL;                                                                                                      \
  } while (0)

static lane *lane_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_unwrap(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "PGTLS_ERR_NATIVE", "not a native lane");
    return NULL;
  }
  return p;
}

/* The arguments of a lane method, the lane first; NULL with a JavaScript exception pending. */
static lane *lane_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", usage);
    return NULL;
  }
  return lane_arg(env, argv[0]);
}

static double dbl(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static void finalize_lane(napi_env env, void *data, void *hint) {
  (void)hint;
  lane *ln = data;
  if (ln->cb) napi_delete_reference(env, ln->cb);
  ln->cb = NULL;
  if (ln->actx) napi_async_destroy(env, ln->actx);
  ln->actx = NULL;
  ln->closed = 1;
  kick_waiters(ln);
  lane_unref(ln);
}

/* createLane(queryWaitTimeoutMs, checkDelayMs (< 0: no check query), callback(event, serverId)) -> lane */
static napi_value create_lane(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], obj, name;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) THROW("createLane: 3 arguments");
  lane *ln = calloc(1, sizeof *ln);
  if (!ln) THROW("out of memory");
  ln->env = env;
  if (napi_get_uv_event_loop(env, &ln->loop) != napi_ok) {
    free(ln);
    THROW("no event loop");
  }
  double wt = dbl(env, argv[0]), cd = dbl(env, argv[1]);
  ln->wait_timeout = wt > 0 ? (uint64_t)wt : 0;
  ln->check_delay = cd < 0 ? -1 : (int64_t)cd;
  ln->refs = 1;
  napi_create_object(env, &obj);
  napi_create_reference(env, argv[2], 1, &ln->cb);
  napi_create_string_utf8(env, "pgtls:native-lane", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, obj, name, &ln->actx);
  if (napi_wrap(env, obj, ln, finalize_lane, NULL, NULL) != napi_ok) {
    napi_delete_reference(env, ln->cb);
    free(ln);
    THROW("napi_wrap failed");
  }
  return obj;
}

/* A copy of a Buffer argument (NULL and 0 when it is not one or is empty); -1 out of memory. */
static int copy_buf(napi_env env, napi_value v, unsigned char **out, size_t *len) {
  bool isbuf = false;
  void *p = NULL;
  size_t n = 0;
  *out = NULL;
  *len = 0;
  if (napi_is_buffer(env, v, &isbuf) != napi_ok || !isbuf) return 0;
  napi_get_buffer_info(env, v, &p, &n);
  if (n == 0) return 0;
  *out = malloc(n);
  if (!*out) return -1;
  memcpy(*out, p, n);
  *len = n;
  return 0;
}

/* A server joins the lane (not yet idle nor held); NULL with *why on failure. `names`: its prepared statements. */
static lane_srv *new_srv(lane *ln, int id, int fd, double life, int gucid, napi_env env, napi_value names,
                         const char **why) {
  lane_srv *srv = calloc(1, sizeof *srv);
  if (!srv || copy_buf(env, names, &srv->names, &srv->names_len) != 0) {
    free(srv);
    *why = "out of memory";
    return NULL;
  }
  int rc = uv_poll_init(ln->loop, &srv->h, fd);
  if (rc != 0) {
    free(srv->names);
    free(srv);
    *why = uv_strerror(rc);
    return NULL;
  }
  srv->ln = ln;
  srv->id = id;
  srv->fd = fd;
  srv->gucid = gucid;
  srv->expires = life > 0 ? uv_now(ln->loop) + (uint64_t)life : 0;
  srv->next_all = ln->all;
  ln->all = srv;
  ln->n_all++;
  ln->refs++;
  return srv;
}

/* laneGive(lane, serverId, serverFd, lifetimeLeftMs, gucid, preparedNames?) -> true when the lane took the server
 * for the client waiting first in its queue (false: nobody waits there; the server stays JavaScript's). */
static napi_value lane_give(napi_env env, napi_callback_info info) {
  napi_value argv[6], r;
  lane *ln = lane_args(env, info, 6, argv, "laneGive: 6 arguments");
  if (!ln) return NULL;
  int32_t id = 0, fd = -1, gucid = 0;
  napi_get_value_int32(env, argv[1], &id);
  napi_get_value_int32(env, argv[2], &fd);
  napi_get_value_int32(env, argv[4], &gucid);
  bool took = false;
  if (ln->wq_head && !ln->closed && id > 0 && fd >= 0 && !find_srv(ln, id)) {
    const char *why = NULL;
    lane_srv *srv = new_srv(ln, id, fd, dbl(env, argv[3]), gucid, env, argv[5], &why);
    if (!srv) THROW(why);
    srv->released = uv_now(ln->loop);
    offer(ln, srv);
    took = true;
  }
  napi_get_boolean(env, took, &r);
  return r;
}

/* txLane(session, lane, serverId, serverFd, lifetimeLeftMs (0: none), gucid, clientBytes?, trackNames,
 * statements?, preparedNames?): relay the session's transactions in the lane, starting on this server (which joins
 * the lane) with these client bytes; `statements` the client's (name, server name) pairs and `preparedNames` the
 * server's, NUL-ended, for the renames of txrelay.h. */
static napi_value tx_lane(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 10) THROW("txLane: 10 arguments");
  session *s = pgtls_session_unwrap(env, argv[0]);
  lane *ln = s ? lane_arg(env, argv[1]) : NULL;
  if (!s || !ln) return NULL;
  if (s->done || s->c.phase != PH_STREAM || s->c.closing || s->end_emitted || s->tp || s->ln || ln->closed)
    THROW("the TLS session cannot relay in the lane now");
  int32_t id = 0, fd = -1, gucid = 0;
  napi_get_value_int32(env, argv[2], &id);
  napi_get_value_int32(env, argv[3], &fd);
  napi_get_value_int32(env, argv[5], &gucid);
  double life = dbl(env, argv[4]);
  if (fd < 0 || id <= 0) THROW("txLane: a server id and fd");
  if (find_srv(ln, id)) THROW("txLane: the server is in the lane already");
  void *cl = NULL;
  size_t cll = 0;
  bool isbuf = false, track = false;
  if (napi_is_buffer(env, argv[6], &isbuf) == napi_ok && isbuf) napi_get_buffer_info(env, argv[6], &cl, &cll);
  napi_get_value_bool(env, argv[7], &track);
  const char *why = NULL;
  unsigned char *cmap = NULL;
  size_t cmap_len = 0;
  if (copy_buf(env, argv[8], &cmap, &cmap_len) != 0) THROW("out of memory");
  lane_srv *srv = new_srv(ln, id, fd, life, gucid, env, argv[9], &why);
  if (!srv) {
    free(cmap);
    THROW(why);
  }
  if (pgtls_tx_start(&s->c, fd, track, 0, cl, cll) != 0) {
    free(cmap);
    srv_detach(srv);
    THROW("out of memory");
  }
  free(s->cmap);
  s->cmap = cmap;
  s->cmap_len = cmap_len;
  s->c.tx->cmap = cmap;
  s->c.tx->cmap_len = cmap_len;
  s->c.tx->sset = srv->names;
  s->c.tx->sset_len = srv->names_len;
  s->ln = ln;
  ln->refs++;
  s->gucid = gucid;
  s->txs = 0;
  s->lane_ev = 0;
  srv->owner = s;
  s->srv = srv;
  s->active = 1;
  s->trimmed = 0;
  pgtls_session_defer(s);
  return NULL;
}

/* laneSet(lane, full, jsWaiting, jsIdle): whether the pool can open no more servers, whether clients wait in
 * JavaScript's queue, whether JavaScript holds idle servers (then new transactions take those). */
static napi_value lane_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  lane *ln = lane_args(env, info, 4, argv, "laneSet: 4 arguments");
  if (!ln) return NULL;
  bool full = false, jsw = false, jsi = false;
  napi_get_value_bool(env, argv[1], &full);
  napi_get_value_bool(env, argv[2], &jsw);
  napi_get_value_bool(env, argv[3], &jsi);
  ln->full = full;
  ln->js_waiting = jsw;
  ln->js_idle = jsi;
  if (!full) kick_waiters(ln);
  return NULL;
}

/* laneTake(lane) -> [serverId, idleMs] of the newest idle server, which leaves the lane; undefined when none. */
static napi_value lane_take(napi_env env, napi_callback_info info) {
  napi_value argv[1], r;
  lane *ln = lane_args(env, info, 1, argv, "laneTake: 1 argument");
  if (!ln) return NULL;
  lane_srv *srv = ln->idle;
  if (!srv) {
    napi_get_undefined(env, &r);
    return r;
  }
  double idle_ms = (double)(uv_now(ln->loop) - srv->released);
  int id = srv->id;
  srv_detach(srv);
  napi_create_array_with_length(env, 2, &r);
  napi_set_element(env, r, 0, pgtls_num(env, id));
  napi_set_element(env, r, 1, pgtls_num(env, idle_ms));
  return r;
}

/* laneRemove(lane, serverId) -> whether an idle server left the lane (one a session holds stays). */
static napi_value lane_remove(napi_env env, napi_callback_info info) {
  napi_value argv[2], r;
  lane *ln = lane_args(env, info, 2, argv, "laneRemove: 2 arguments");
  if (!ln) return NULL;
  int32_t id = 0;
  napi_get_value_int32(env, argv[1], &id);
  lane_srv *srv = find_srv(ln, id);
  bool gone = srv && !srv->owner;
  if (gone) srv_detach(srv);
  napi_get_boolean(env, gone, &r);
  return r;
}

/* laneStats(lane) -> [idle, waiting, oldest wait ms, servers, boundaries, hand-offs, waits, then (id, ms idle) of
 * each idle server] */
static napi_value lane_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], r;
  lane *ln = lane_args(env, info, 1, argv, "laneStats: 1 argument");
  if (!ln) return NULL;
  double oldest = ln->wq_head ? (double)(uv_now(ln->loop) - ln->wq_head->wait_since) : 0;
  double v[7] = {ln->n_idle, ln->n_wait, oldest, ln->n_all, ln->boundaries, ln->handoffs, ln->waits};
  napi_create_array_with_length(env, 7 + 2 * (size_t)ln->n_idle, &r);
  for (int i = 0; i < 7; i++) napi_set_element(env, r, (uint32_t)i, pgtls_num(env, v[i]));
  uint32_t i = 7;
  uint64_t now = uv_now(ln->loop);
  for (lane_srv *srv = ln->idle; srv; srv = srv->next_idle) {
    napi_set_element(env, r, i++, pgtls_num(env, srv->id));
    napi_set_element(env, r, i++, pgtls_num(env, (double)(now - srv->released)));
  }
  return r;
}

/* laneClose(lane): no more servers are handed out in the lane; its waiting clients go to JavaScript. */
static napi_value lane_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  lane *ln = lane_args(env, info, 1, argv, "laneClose: 1 argument");
  if (!ln) return NULL;
  ln->closed = 1;
  kick_waiters(ln);
  return NULL;
}

/* txServer(session) -> the id of the lane server the session holds now (0: none). */
static napi_value tx_server(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) THROW("txServer: 1 argument");
  session *s = pgtls_session_unwrap(env, argv[0]);
  if (!s) return NULL;
  return pgtls_num(env, s->srv ? s->srv->id : 0);
}

void lane_define(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"createLane", NULL, create_lane, NULL, NULL, NULL, napi_default, NULL},
      {"txLane", NULL, tx_lane, NULL, NULL, NULL, napi_default, NULL},
      {"laneSet", NULL, lane_set, NULL, NULL, NULL, napi_default, NULL},
      {"laneGive", NULL, lane_give, NULL, NULL, NULL, napi_default, NULL},
      {"laneTake", NULL, lane_take, NULL, NULL, NULL, napi_default, NULL},
      {"laneRemove", NULL, lane_remove, NULL, NULL, NULL, napi_default, NULL},
      {"laneStats", NULL, lane_stats, NULL, NULL, NULL, napi_default, NULL},
      {"laneClose", NULL, lane_close, NULL, NULL, NULL, napi_default, NULL},
      {"txServer", NULL, tx_server, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
}
