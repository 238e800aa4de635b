/*
 * The native lane of a transaction pool: the part of PgBouncer's pool loop that runs per transaction, in C, so that
 * a transaction-mode client whose GUCs match gets a server, relays its transaction and gives the server back without
 * a call into JavaScript.
 *
 * JavaScript's Pool (src/gateway/pool/pool.ts) stays the pool: it opens and closes servers, applies GUCs, runs
 * checks and resets, enforces every timeout but one, and answers SHOW POOLS. It lends servers to its lane (a session
 * starts relaying with one: txLane) and the lane keeps them between transactions:
 *
 * - At a transaction boundary (ReadyForQuery 'I', nothing outstanding, nothing more from the server, every framed
 *   client byte sent) the server goes to the lane's first waiting client, or onto its idle stack (newest first, as
 *   the pool's own), watched: any byte, an end or an error from an idle server breaks it (JavaScript is told).
 * - A client whose next transaction starts takes the newest idle server when that server's GUC signature is the
 *   client's (the same values of every GUC the pool tracks: JavaScript assigns the numbers), it is not due for
 *   server_check_query and not past server_lifetime; else it goes back to JavaScript (TX_NEED_SERVER), which takes
 *   servers from the lane when it needs them (laneTake). With no idle server it waits in the lane's FIFO queue when
 *   JavaScript said the pool cannot grow (laneSet), under query_wait_timeout (TX_WAIT_TIMEOUT: JavaScript sends
 *   PgBouncer's FATAL). While clients wait in JavaScript's own queue (laneSet), released servers go to them first
 *   (the lane's callback); new waiters join the lane's queue, so JavaScript's drains.
 * - Anything else hands the session back to JavaScript with the server it holds (the id), as the transaction relay
 *   always did; the server then leaves the lane.
 */
#ifndef PGTLS_LANE_H
#define PGTLS_LANE_H

#include <node_api.h>
#include <stdint.h>
#include <uv.h>

#include "session.h"

/* Handback reasons of the lane (after txrelay.h's). */
#define TX_NEED_SERVER 6  /* the client's next transaction needs a server the lane cannot give */
#define TX_WAIT_TIMEOUT 7 /* query_wait_timeout expired in the lane's queue */

typedef struct lane_srv {
  uv_poll_t h; /* first: the close callback gets this struct */
  struct lane *ln;
  session *owner; /* relaying a transaction for this session; NULL: on the idle stack */
  struct lane_srv *next_idle, *next_all;
  int id; /* ServerConnection.id */
  int fd; /* JavaScript's dup of the server socket (never closed here) */
  int gucid;
  int mask;          /* poll interest now */
  int idle;          /* on the idle stack */
  uint64_t released; /* uv_now when it last went idle */
  uint64_t expires;  /* server_lifetime deadline in uv_now ms (0: none) */
  unsigned char *names; /* server names of the statements prepared on it, NUL-ended (txrelay.h sset), owned */
  size_t names_len;
} lane_srv;

typedef struct lane {
  napi_env env;
  napi_ref cb; /* (event, serverId): 1 an idle server broke, 2 a session died holding one, 3 a clean server for
                * the clients waiting in JavaScript's queue */
  napi_async_context actx;
  uv_loop_t *loop;
  uv_timer_t *timer; /* query_wait_timeout of the first waiting client */
  lane_srv *idle, *all;
  int n_idle, n_all;
  session *wq_head, *wq_tail;
  int n_wait;
  int full;       /* JavaScript: the pool cannot open another server */
  int js_waiting; /* JavaScript: clients wait in the pool's own queue (they are served first) */
  int js_idle;    /* JavaScript: the pool holds idle servers (a new transaction takes one of those) */
  int closed;
  int64_t check_delay;   /* server_check_delay in ms; < 0 when there is no server_check_query */
  uint64_t wait_timeout; /* query_wait_timeout in ms; 0: none */
  int refs;              /* the JavaScript object, each server, each session relaying in it */
  double boundaries, handoffs, waits;
} lane;

/* The session's transaction relay reached a boundary: 1 when the lane took the server back (keep relaying), 0 when
 * JavaScript must have it (tx_handback). */
int lane_release(session *s);
/* The session is in the lane between transactions (no server): read the client, take a server when its next
 * transaction starts. 2 a server was attached (run the relay), 1 hand back (c->tx->reason set), 0 wait (*want). */
int lane_idle_step(session *s, int *want);
/* The session stops relaying in the lane (handback, txStop, teardown): its server leaves the lane (returned: its id,
 * or 0), it leaves the wait queue. `dirty`: the session died holding the server; JavaScript's lane callback is told. */
int lane_leave(session *s, int dirty);
/* Interest in the server's fd while a session relays on it (WANT_BR/WANT_BW of the session's want). */
void lane_srv_interest(lane_srv *srv, int want);

/* N-API: createLane, txLane, laneSet, laneGive, laneTake, laneStats, laneRemove, laneClose, txServer. */
void lane_define(napi_env env, napi_value exports);

#endif
