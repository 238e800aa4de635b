/* The transaction relay; see txrelay.h for what it decides itself and what it hands back to JavaScript. */
#include "txrelay.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#define TX_TURNS 64

static unsigned char q_head(const pgtls_tx *t) { return t->qn ? t->q[t->qh] : 0; }

static void q_shift(pgtls_tx *t) {
  t->qh = (t->qh + 1) % PGTLS_TXQ_CAP;
  t->qn--;
}

static int q_push(pgtls_tx *t, unsigned char k) {
  if (t->qn == PGTLS_TXQ_CAP) return -1;
  t->q[(t->qh + t->qn) % PGTLS_TXQ_CAP] = k;
  t->qn++;
  return 0;
}

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* The server's name for client statement [n, n + nl), if the attached server has it prepared; else NULL. */
static const unsigned char *server_name(const pgtls_tx *t, const unsigned char *n, size_t nl, size_t *sl) {
  if (!t->cmap || !t->sset) return NULL;
  const unsigned char *p = t->cmap, *end = t->cmap + t->cmap_len;
  while (p < end) {
    const unsigned char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) return NULL;
    const unsigned char *sv = z + 1, *sz = sv < end ? memchr(sv, 0, (size_t)(end - sv)) : NULL;
    if (!sz) return NULL;
    if ((size_t)(z - p) == nl && memcmp(p, n, nl) == 0) {
      size_t l = (size_t)(sz - sv);
      for (const unsigned char *q = t->sset, *qe = t->sset + t->sset_len; q < qe;) {
        const unsigned char *qz = memchr(q, 0, (size_t)(qe - q));
        if (!qz) return NULL;
        if ((size_t)(qz - q) == l && memcmp(q, sv, l) == 0) {
          *sl = l;
          return sv;
        }
        q = qz + 1;
      }
      return NULL;
    }
    p = sz + 1;
  }
  return NULL;
}

/*
 * Put the server's name in place of the client's at [name, name + nl) of the message at m (whole in c->up), moving
 * what follows; the length field is updated. -1 when the buffer has no room (JavaScript renames it).
 */
static int rename_stmt(pgtls_conn *c, unsigned char *m, unsigned char *name, size_t nl, const unsigned char *sv,
                       size_t sl, uint32_t *len) {
  size_t tail = (size_t)(c->up + c->up_len - (name + nl));
  if (sl > nl) {
    if (c->up_cap - c->up_len < sl - nl) return -1;
    memmove(name + sl, name + nl, tail);
    c->up_len += sl - nl;
  } else if (sl < nl) {
    memmove(name + sl, name + nl, tail);
    c->up_len -= nl - sl;
  }
  memcpy(name, sv, sl);
  uint32_t nlen = (uint32_t)(*len + sl - nl);
  m[1] = (unsigned char)(nlen >> 24);
  m[2] = (unsigned char)(nlen >> 16);
  m[3] = (unsigned char)(nlen >> 8);
  m[4] = (unsigned char)nlen;
  *len = nlen;
  return 0;
}

/*
 * A client message at its header: 0 forward it (its expected answer queued), 1 wait for the rest of it, 2 it is
 * JavaScript's. Whole messages are needed only to read a statement name (tracked P/B/D/C); anything else streams.
 * A Bind or Describe of a statement the relay can rename (t->cmap) is rewritten in place (*len updated).
 */
static int classify_client(pgtls_conn *c, pgtls_tx *t, unsigned char *m, size_t avail, uint32_t *plen) {
  uint32_t len = *plen;
  unsigned char kind = 0;
  int named = 0;
  switch (m[0]) {
  case 'S':
    kind = 'S';
    break;
  case 'Q':
  case 'F':
    kind = 'Q';
    break;
  case 'E':
    kind = 'E';
    break;
  case 'P':
  case 'B':
  case 'D':
  case 'C':
    kind = m[0];
    named = t->track;
    break;
  case 'H':
  case 'd':
  case 'c':
  case 'f':
    break;
  default:
    return 2; /* Terminate, and anything the JavaScript relay would have to judge */
  }
  if (kind && t->qn == PGTLS_TXQ_CAP) return 2; /* before any rename: a message handed back is the client's */
  if (named) {
    size_t total = (size_t)len + 1;
    if (avail < total) return total > c->up_cap ? 2 : 1;
    const unsigned char *b = m + 5, *z;
    size_t bl = len - 4;
    if (m[0] == 'P') {
      z = memchr(b, 0, bl);
      if (!z || z != b) return 2; /* a named statement (or no name at all) */
    } else if (m[0] == 'B') {
      z = memchr(b, 0, bl); /* the portal */
      if (!z) return 2;
      size_t rest = bl - (size_t)(z + 1 - b);
      if (rest == 0) return 2;
      if (z[1] != 0) { /* a named statement: renamed when the server has it, else JavaScript's */
        unsigned char *n = (unsigned char *)z + 1, *nz = memchr(n, 0, rest);
        size_t sl = 0;
        const unsigned char *sv = nz ? server_name(t, n, (size_t)(nz - n), &sl) : NULL;
        if (!sv || rename_stmt(c, m, n, (size_t)(nz - n), sv, sl, plen) != 0) return 2;
      }
    } else if (bl < 2 || (b[0] != 'S' && b[0] != 'P')) {
      return 2;
    } else if (b[0] == 'S' && b[1] != 0) {
      unsigned char *n = (unsigned char *)b + 1, *nz = memchr(n, 0, bl - 1);
      size_t sl = 0;
      const unsigned char *sv = nz && m[0] == 'D' ? server_name(t, n, (size_t)(nz - n), &sl) : NULL;
      if (!sv || rename_stmt(c, m, n, (size_t)(nz - n), sv, sl, plen) != 0) return 2;
    }
  }
  if (kind && q_push(t, kind) != 0) return 2;
  if (kind && t->session) t->status = 0; /* not known idle until this request's ReadyForQuery */
  return 0;
}

static int tag_is(const unsigned char *b, size_t bl, const char *prefix) {
  size_t n = strlen(prefix);
  return bl >= n && memcmp(b, prefix, n) == 0;
}

/* A server message at its header: 0 forward, 1 wait for the rest, 2 JavaScript's, 3 forward and hand back (the
 * transaction is over). Mirrors Expected.onMessage (src/gateway/pool/expected.ts) for the entries a native relay
 * can hold; an answer matching no request is JavaScript's, which then finds the server out of step. */
static int classify_server(pgtls_tx *t, const unsigned char *m, size_t avail, uint32_t len) {
  unsigned char h = q_head(t);
  size_t total = (size_t)len + 1;
  switch (m[0]) {
  case '1':
  case '2':
  case '3': {
    unsigned char want = m[0] == '1' ? 'P' : m[0] == '2' ? 'B' : 'C';
    if (h != want) return 2;
    q_shift(t);
    return 0;
  }
  case 'T':
  case 'n':
    if (h == 'D') q_shift(t);
    return 0;
  case 'C':
    if (t->session) { /* the session's own statements and GUCs: nothing to track */
      if (h == 'E') q_shift(t);
      return 0;
    }
    if (avail < total) return total > PGTLS_IOBUF ? 2 : 1;
    /* JavaScript tracks these (the session's statements and GUCs are reset) */
    if (tag_is(m + 5, len - 4, "DISCARD") || tag_is(m + 5, len - 4, "DEALLOCATE") || tag_is(m + 5, len - 4, "RESET"))
      return 2;
    if (h == 'E') q_shift(t);
    return 0;
  case 'I':
  case 's':
    if (h == 'E') q_shift(t);
    return 0;
  case 'Z':
    if (len != 5) return 2;
    if (avail < total) return 1;
    if (h != 'S' && h != 'Q') return 2;
    q_shift(t);
    t->status = m[5];
    return m[5] == 'I' && t->qn == 0 && !t->session ? 3 : 0;
  case 'E':
    /* the backend skips to the next Sync: so do the expected answers */
    if (h && h != 'S' && h != 'Q')
      while (t->qn && q_head(t) != 'S' && q_head(t) != 'Q') q_shift(t);
    return 0;
  case 'D':
  case 't':
  case 'N':
  case 'A':
  case 'G':
  case 'H':
  case 'W':
  case 'd':
  case 'c':
  case 'V':
    return 0;
  case 'S':
    return t->session ? 0 : 2; /* the client's GUCs are JavaScript's in transaction pooling only */
  default:
    return 2; /* ParameterStatus (JavaScript keeps the client's GUCs), and anything unexpected */
  }
}

int pgtls_tx_start(pgtls_conn *c, int sfd, int track, int session, const unsigned char *cl, size_t n) {
  if (!c->tx) {
    c->tx = malloc(sizeof *c->tx);
    if (!c->tx) return -1;
  }
  pgtls_tx *t = c->tx;
  memset(t, 0, offsetof(pgtls_tx, q));
  t->fd = sfd;
  t->track = session ? 0 : track;
  t->session = session;
  t->status = session ? 'I' : 0;
  size_t need = n > PGTLS_IOBUF ? n : PGTLS_IOBUF;
  if (!c->up || c->up_cap < need) {
    unsigned char *p = realloc(c->up, need);
    if (!p) return -1;
    c->up = p;
    c->up_cap = need;
  }
  if (n) memcpy(c->up, cl, n);
  c->up_off = 0;
  c->up_len = n;
  /* Both readiness hints stay as the loop left them (the server's: nothing, Node's reads just stopped with nothing
   * buffered): the level-triggered poll reports what is there, so no read starts with EAGAIN. */
  c->b_readable = 0;
  c->reading = 0;
  c->phase = PH_TX;
  return 0;
}

void pgtls_tx_finish(pgtls_conn *c) {
  c->up_off = c->up_len = 0;
  if (c->tx) c->tx->up_scan = c->tx->dn_off = c->tx->dn_scan = c->tx->dn_len = 0;
  c->b_readable = 0;
  c->phase = PH_STREAM;
}

/* Per-transaction state back to "nothing seen" (the queue is empty at a boundary, and when a lane server is taken). */
static void tx_reset(pgtls_conn *c, pgtls_tx *t, int sfd) {
  t->fd = sfd;
  t->reason = t->status = t->s_readable = t->s_eof = t->s_err = t->mid = 0;
  t->c_rem = t->s_rem = 0;
  t->up_scan = c->up ? c->up_off : 0;
  t->dn_off = t->dn_scan = t->dn_len = 0;
  t->qh = t->qn = 0;
  c->b_readable = 0;
}

void pgtls_tx_attach(pgtls_conn *c, int sfd) { tx_reset(c, c->tx, sfd); }

void pgtls_tx_detach(pgtls_conn *c) { tx_reset(c, c->tx, -1); }

static size_t client_room(pgtls_conn *c, pgtls_tx *t);

int pgtls_tx_read_client(pgtls_conn *c) {
  pgtls_tx *t = c->tx;
  int total = 0;
  /* SSL_read returns nothing after it read ciphertext from the socket: try again, a bounded number of times */
  for (int i = 0; i < 8 && !c->c_tls_eof && !c->tls_fatal; i++) {
    size_t room = client_room(c, t);
    if (room == 0) break;
    int progress = 0;
    int r = pgtls_read_plain(c, c->up + c->up_len, room, &progress);
    if (r > 0) {
      c->up_len += (size_t)r;
      t->from_client += (uint64_t)r;
      total += r;
    } else if (!progress) {
      break;
    }
  }
  return total;
}

static void scan_client(pgtls_conn *c, pgtls_tx *t) {
  while (t->up_scan < c->up_len) {
    size_t avail = c->up_len - t->up_scan;
    if (t->c_rem) {
      size_t k = t->c_rem < avail ? (size_t)t->c_rem : avail;
      t->up_scan += k;
      t->c_rem -= k;
      continue;
    }
    if (t->reason || avail < 5) break;
    const unsigned char *m = c->up + t->up_scan;
    uint32_t len = be32(m + 1);
    if (len < 4 || len > PGTLS_TX_MAX_MESSAGE) {
      t->reason = TX_CLIENT_MSG; /* JavaScript sends the FATAL */
      break;
    }
    int r = classify_client(c, t, c->up + t->up_scan, avail, &len);
    if (r == 1) break;
    if (r == 2) {
      t->reason = TX_CLIENT_MSG;
      break;
    }
    t->c_rem = (uint64_t)len + 1;
  }
}

static void scan_server(pgtls_tx *t) {
  while (t->dn_scan < t->dn_len) {
    size_t avail = t->dn_len - t->dn_scan;
    if (t->s_rem) {
      size_t k = t->s_rem < avail ? (size_t)t->s_rem : avail;
      t->dn_scan += k;
      t->s_rem -= k;
      continue;
    }
    if (t->reason || avail < 5) break;
    const unsigned char *m = t->dn + t->dn_scan;
    uint32_t len = be32(m + 1);
    if (len < 4 || len > PGTLS_TX_MAX_MESSAGE) {
      t->reason = TX_SERVER_MSG;
      break;
    }
    int r = classify_server(t, m, avail, len);
    if (r == 1) break;
    if (r == 2) {
      t->reason = TX_SERVER_MSG;
      break;
    }
    if (r == 3) { /* a ReadyForQuery, whole in the buffer */
      t->dn_scan += (size_t)len + 1;
      t->reason = TX_BOUNDARY;
      break;
    }
    t->s_rem = (uint64_t)len + 1;
  }
}

/* Framed server bytes go to the client; the memory BIO takes all of them or fails fatally. */
static int encrypt_server(pgtls_conn *c, pgtls_tx *t) {
  int progress = 0;
  if (t->dn_scan > t->dn_off && !c->tls_fatal) {
    if (SSL_write(c->ssl, t->dn + t->dn_off, (int)(t->dn_scan - t->dn_off)) <= 0) {
      c->tls_fatal = 1;
      pgtls_set_reason_from_queue(c, "no SSL error reported");
    }
    t->dn_off = t->dn_scan;
    progress = 1;
  }
  if (t->dn_off == t->dn_len) t->dn_off = t->dn_scan = t->dn_len = 0;
  return progress;
}

/* Room to read more client plaintext (compacting when the free tail is short). */
static size_t client_room(pgtls_conn *c, pgtls_tx *t) {
  if (!c->up) {
    c->up = malloc(PGTLS_IOBUF); /* given back by the idle trim while empty */
    if (!c->up) return 0;
    c->up_cap = PGTLS_IOBUF;
    c->up_off = c->up_len = t->up_scan = 0;
  }
  if (c->up_off > 0 && c->up_cap - c->up_len < 4096) {
    memmove(c->up, c->up + c->up_off, c->up_len - c->up_off);
    c->up_len -= c->up_off;
    t->up_scan -= c->up_off;
    c->up_off = 0;
  }
  return c->up_cap - c->up_len;
}

int pgtls_tx_pump(pgtls_conn *c, int *want) {
  pgtls_tx *t = c->tx;
  *want = 0;
  int progress = 1;
  ERR_clear_error(); /* as the splice pump: only a fatal error queues anything, and that ends the relay */
  for (int turns = 0; turns < TX_TURNS && progress; turns++) {
    progress = 0;
    /* client -> server: frame, send what is framed, read more */
    scan_client(c, t);
    if (c->up_off < t->up_scan && !t->s_err) {
      ssize_t w = send(t->fd, c->up + c->up_off, t->up_scan - c->up_off, MSG_NOSIGNAL);
      if (w > 0) {
        c->up_off += (size_t)w;
        progress = 1;
      } else if (w < 0 && errno == EINTR) {
        progress = 1;
      } else if (!(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        t->s_err = 1;
        pgtls_set_reason_errno(c, w < 0 ? errno : EPIPE);
      }
    }
    if (c->up_len && c->up_off == c->up_len) c->up_off = c->up_len = t->up_scan = 0;
    if (!c->c_tls_eof && !c->tls_fatal && (!t->reason || t->c_rem)) {
      size_t room = client_room(c, t);
      if (room > 0) {
        int r = pgtls_read_plain(c, c->up + c->up_len, room, &progress);
        if (r > 0) {
          c->up_len += (size_t)r;
          t->from_client += (uint64_t)r;
        }
      }
    }
    /* server -> client: frame, encrypt what is framed, read more while the ciphertext backlog allows */
    scan_server(t);
    if (encrypt_server(c, t)) progress = 1;
    int s_wanted = !t->s_eof && !t->s_err && !c->tls_fatal && !c->c_wr_err &&
                   pgtls_out_pending(c) < PGTLS_CIPHER_CAP && (!t->reason || t->s_rem);
    /* Compacted before a read, and also when the buffer is full: a full buffer ending in the first bytes of a
     * message (a header cut short, a CommandComplete read whole) would otherwise never get the room to finish it. */
    if (s_wanted && t->dn_off > 0 && (c->b_readable || t->dn_len == PGTLS_IOBUF)) {
      memmove(t->dn, t->dn + t->dn_off, t->dn_len - t->dn_off);
      t->dn_len -= t->dn_off;
      t->dn_scan -= t->dn_off;
      t->dn_off = 0;
    }
    if (c->b_readable && s_wanted && t->dn_len < PGTLS_IOBUF) {
      size_t room = PGTLS_IOBUF - t->dn_len;
      ssize_t r = read(t->fd, t->dn + t->dn_len, room);
      if (r > 0) {
        t->dn_len += (size_t)r;
        t->from_server += (uint64_t)r;
        if ((size_t)r < room) c->b_readable = 0;
        progress = 1;
      } else if (r == 0) {
        t->s_eof = 1;
        progress = 1;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->b_readable = 0;
      } else if (errno != EINTR) {
        t->s_eof = t->s_err = 1;
        pgtls_set_reason_errno(c, errno);
        progress = 1;
      }
      scan_server(t);
      if (encrypt_server(c, t)) progress = 1;
    }
    size_t before = pgtls_out_pending(c);
    if (before > 0 && !c->c_wr_err) {
      pgtls_flush(c);
      if (pgtls_out_pending(c) < before || c->c_wr_err) progress = 1;
    }
    if (c->c_tls_eof || c->c_wr_err || c->tls_fatal) {
      t->reason = TX_CLIENT_END;
      goto handback;
    }
    if (t->s_eof || t->s_err) {
      t->reason = TX_SERVER_END;
      goto handback;
    }
    if (t->reason && !t->c_rem && !t->s_rem) goto handback;
  }
  {
    size_t out = pgtls_out_pending(c);
    int client_wanted = !t->reason || t->c_rem;
    if (client_wanted && (c->up_len < c->up_cap || c->up_off > 0 || !c->up)) *want |= WANT_CR;
    if (out > 0) *want |= WANT_CW;
    if ((!t->reason || t->s_rem) && out < PGTLS_CIPHER_CAP && t->dn_len < PGTLS_IOBUF) *want |= WANT_BR;
    if (c->up_off < t->up_scan) *want |= WANT_BW;
    if (progress) *want |= WANT_CW | WANT_BW; /* the turn bound: come back on the next loop iteration */
    return 0;
  }
handback:
  t->mid = t->c_rem || t->s_rem;
  return 1;
}
