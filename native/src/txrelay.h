/*
 * The transaction relay (transaction pooling on the native data plane): client (TLS) <-> a pooled server's socket,
 * both directions framed into protocol messages and forwarded unmodified, with the queue of requests not yet
 * answered kept the way src/gateway/pool/expected.ts keeps it. Every decision that needs the pool's state stays in
 * JavaScript: the relay hands control back (a "handback") at the transaction boundary (ReadyForQuery 'I' with
 * nothing outstanding, where JavaScript releases the server), before any message JavaScript must see or rewrite
 * (Terminate; named statements when max_prepared_statements > 0; ParameterStatus; DISCARD ALL / DEALLOCATE ALL /
 * RESET), before anything it does not expect (unknown types, bad lengths, an answer matching no request), and at
 * EOF or an error on either side. Handbacks happen between messages in both directions, so JavaScript picks up the
 * unprocessed bytes with its own framing as if it had read them itself.
 *
 * Session pooling (`session`): the server is the client's for its whole session, so there is no boundary and
 * nothing about GUCs or statements is JavaScript's: ReadyForQuery 'I', ParameterStatus and DISCARD / DEALLOCATE /
 * RESET pass through (the status is recorded), named statements stream as any message, and the relay hands back
 * only at the client's Terminate (not forwarded: the server goes back to the pool), at an end, or at anything it
 * cannot follow (JavaScript then splices the rest raw). `status` is 'I' at the start (the server is idle when lent)
 * and 0 from each request until its ReadyForQuery, so that 'I' with an empty queue means "known idle".
 */
#ifndef PGTLS_TXRELAY_H
#define PGTLS_TXRELAY_H

#include "engine.h"

/* Requests waiting for their answer beyond this hand back (JavaScript's queue is unbounded). */
#define PGTLS_TXQ_CAP 256
/* A client message may be 1 GiB (PostgreSQL's PQ_LARGE_MESSAGE_LIMIT), as the JavaScript relay allows. */
#define PGTLS_TX_MAX_MESSAGE (1u << 30)

enum pgtls_tx_reason {
  TX_BOUNDARY = 1,   /* ReadyForQuery 'I', nothing outstanding: release the server */
  TX_CLIENT_MSG = 2, /* the next client message is JavaScript's (or unexpected, or a bad length) */
  TX_SERVER_MSG = 3, /* the next server message is JavaScript's (or unexpected) */
  TX_CLIENT_END = 4, /* the client closed or failed */
  TX_SERVER_END = 5, /* the server closed or failed */
};

typedef struct pgtls_tx {
  int fd;    /* the server's socket (a dup owned by JavaScript's ServerConnection; never closed here) */
  int track; /* max_prepared_statements > 0: named statements are JavaScript's */
  int session; /* session pooling: no boundary, ParameterStatus and DISCARD pass through (see above) */
  int reason;
  int status;      /* the last ReadyForQuery status byte seen (0: none) */
  int s_readable;  /* the loop reported the server readable */
  int s_eof;       /* read(fd) returned 0 or failed */
  int s_err;       /* a server syscall failed */
  int mid;         /* the handback happened inside a message (EOF or error only): JavaScript cannot resume */
  uint64_t c_rem;  /* client bytes of the current message still to pass through */
  uint64_t s_rem;  /* server bytes of the current message still to pass through */
  size_t up_scan;  /* client plaintext in c->up: [up_off, up_scan) framed, to send; [up_scan, up_len) not yet */
  size_t dn_off, dn_scan, dn_len; /* server bytes in dn: [dn_off, dn_scan) framed, to encrypt; then not yet */
  uint64_t from_client, from_server;
  /*
   * Named statements the relay may rename itself (the lane; NULL otherwise): the client's statements as NUL-ended
   * pairs "client name, server name", and the server names prepared on the server attached now (NUL-ended). A Bind
   * or Describe of a client statement the server has is forwarded with the server's name; anything else about a
   * named statement is JavaScript's. Neither is owned here.
   */
  const unsigned char *cmap, *sset;
  size_t cmap_len, sset_len;
  unsigned qh, qn;
  unsigned char q[PGTLS_TXQ_CAP]; /* kinds: P B D E S Q C, as expected.ts's entries */
  unsigned char dn[PGTLS_IOBUF];
} pgtls_tx;

/*
 * Start relaying between the client and server fd `sfd` (not owned). `cl` are decrypted client bytes JavaScript
 * holds (starting at a message boundary). `session`: session pooling (see above; `track` is then 0). 0 on success,
 * -1 out of memory.
 */
int pgtls_tx_start(pgtls_conn *c, int sfd, int track, int session, const unsigned char *cl, size_t n);
/* Relay as far as the sockets allow. 1 when control goes back to JavaScript (c->tx->reason), 0 to wait (*want). */
int pgtls_tx_pump(pgtls_conn *c, int *want);
/* After a handback (or to abandon the relay): back to the stream phase, buffers kept. */
void pgtls_tx_finish(pgtls_conn *c);
/* The native lane (lane.h): relay the next transaction on server fd `sfd`, starting with the client bytes already
 * read and not yet framed; or, at a boundary, let the server go (the client's unframed bytes stay). */
void pgtls_tx_attach(pgtls_conn *c, int sfd);
void pgtls_tx_detach(pgtls_conn *c);
/* Between transactions in the lane: read client plaintext into the relay's buffer. The bytes read (0: none now; see
 * c_tls_eof and tls_fatal). */
int pgtls_tx_read_client(pgtls_conn *c);

#endif
