/* The connection engine; see engine.h for why it moves bytes itself between memory BIOs and sockets. */
#include <limits.h>
#include "engine.h"
#include "txrelay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

/* Bound on loop turns per call: each turn makes progress or stops, this only keeps one busy connection from
 * starving the event loop; the caller is asked to come back (WANT_*W) when the bound is hit. */
#define MAX_TURNS 64

/* Backend bytes on their way into SSL_write: consumed within the call that read them, so one buffer per thread
 * serves every connection (connections run on their event loop's thread only). */
static __thread unsigned char scratch[PGTLS_IOBUF];

void pgtls_set_reason_from_queue(pgtls_conn *c, const char *fallback) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (c->reason[0]) return;
  if (e == 0) {
    snprintf(c->reason, sizeof c->reason, "%s", fallback);
    return;
  }
  const char *r = ERR_reason_error_string(e);
  if (r) snprintf(c->reason, sizeof c->reason, "%s", r);
  else if (ERR_SYSTEM_ERROR(e)) snprintf(c->reason, sizeof c->reason, "%s", strerror(ERR_GET_REASON(e)));
  else snprintf(c->reason, sizeof c->reason, "SSL error code %lu", e);
}

void pgtls_set_reason_errno(pgtls_conn *c, int err) {
  if (!c->reason[0]) snprintf(c->reason, sizeof c->reason, "%s", strerror(err));
}

/*
 * Two minimal BIOs over pgtls_buf. Compared with OpenSSL's memory BIO they let read(cfd) land in the buffer OpenSSL
 * reads from, and send(cfd) go straight from the buffer OpenSSL wrote to: no copy and no BIO_ctrl round trips per
 * record. An empty `in` is "retry later", never end of file: EOF is what read(cfd) says.
 */
#define BUF_MIN (PGTLS_IOBUF + 1024)

static int buf_reserve(pgtls_buf *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  if (b->off > 0) { /* compact first */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->cap - b->len >= n) return 0;
  }
  size_t want = b->cap ? b->cap : BUF_MIN;
  while (want - b->len < n) want *= 2;
  unsigned char *p = realloc(b->p, want);
  if (!p) return -1;
  b->p = p;
  b->cap = want;
  return 0;
}

/* After a burst (a large JavaScript write), give the memory back once the buffer is empty. */
static void buf_settle(pgtls_buf *b) {
  if (b->off == b->len) b->off = b->len = 0;
  if (b->len == 0 && b->cap > 4 * BUF_MIN) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

static int out_write(BIO *bio, const char *data, int n) {
  pgtls_buf *b = BIO_get_data(bio);
  if (n <= 0) return 0;
  if (buf_reserve(b, (size_t)n) != 0) return -1;
  memcpy(b->p + b->len, data, (size_t)n);
  b->len += (size_t)n;
  return n;
}

static int in_read(BIO *bio, char *data, int n) {
  pgtls_buf *b = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  size_t avail = b->len - b->off;
  if (avail == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t k = (size_t)n < avail ? (size_t)n : avail;
  memcpy(data, b->p + b->off, k);
  b->off += k;
  if (b->off == b->len) b->off = b->len = 0;
  return (int)k;
}

static long buf_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  pgtls_buf *b = BIO_get_data(bio);
  switch (cmd) {
  case BIO_CTRL_PENDING:
  case BIO_CTRL_WPENDING:
    return (long)(b->len - b->off);
  case BIO_CTRL_FLUSH:
    return 1;
  default:
    return 0;
  }
}

static int buf_create(BIO *bio) {
  BIO_set_init(bio, 1);
  return 1;
}

static BIO_METHOD *in_method, *out_method;

static int make_methods(void) {
  if (in_method) return 0;
  int idx = BIO_get_new_index();
  BIO_METHOD *in = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "pgtls in");
  BIO_METHOD *out = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "pgtls out");
  if (!in || !out) {
    BIO_meth_free(in);
    BIO_meth_free(out);
    return -1;
  }
  BIO_meth_set_read(in, in_read);
  BIO_meth_set_ctrl(in, buf_ctrl);
  BIO_meth_set_create(in, buf_create);
  BIO_meth_set_write(out, out_write);
  BIO_meth_set_ctrl(out, buf_ctrl);
  BIO_meth_set_create(out, buf_create);
  in_method = in;
  out_method = out;
  return 0;
}

int pgtls_conn_init(pgtls_conn *c, SSL_CTX *ctx, int cfd, const unsigned char *initial, size_t initial_len) {
  memset(c, 0, sizeof *c);
  c->cfd = cfd;
  c->bfd = -1;
  c->c_readable = 1;
  if (make_methods() != 0) return -1;
  c->ssl = SSL_new(ctx);
  if (!c->ssl) return -1;
  c->rbio = BIO_new(in_method);
  c->wbio = BIO_new(out_method);
  if (!c->rbio || !c->wbio) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    c->rbio = c->wbio = NULL;
    return -1;
  }
  BIO_set_data(c->rbio, &c->in);
  BIO_set_data(c->wbio, &c->out);
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs now (not the buffers) */
  SSL_set_accept_state(c->ssl);
  if (initial_len > 0 && pgtls_feed(c, initial, initial_len) != 0) return -1;
  return 0;
}

void pgtls_conn_free(pgtls_conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  c->rbio = c->wbio = NULL;
  free(c->in.p);
  free(c->out.p);
  memset(&c->in, 0, sizeof c->in);
  memset(&c->out, 0, sizeof c->out);
  free(c->up);
  c->up = NULL;
  c->up_cap = c->up_len = c->up_off = 0;
  free(c->tx);
  c->tx = NULL;
  if (c->cfd >= 0) close(c->cfd);
  if (c->bfd >= 0) close(c->bfd);
  c->cfd = c->bfd = -1;
  c->phase = PH_DONE;
}

int pgtls_feed(pgtls_conn *c, const unsigned char *p, size_t n) {
  if (n == 0) return 0;
  if (buf_reserve(&c->in, n) != 0) return -1;
  memcpy(c->in.p + c->in.len, p, n);
  c->in.len += n;
  return 0;
}

size_t pgtls_out_pending(pgtls_conn *c) { return c->out.len - c->out.off; }

int pgtls_flush(pgtls_conn *c) {
  pgtls_buf *b = &c->out;
  for (int i = 0; i < MAX_TURNS && b->len > b->off; i++) {
    if (c->cfd < 0 || c->c_wr_err) {
      b->off = b->len = 0; /* nobody to send to (fuzzing, or the client is gone) */
      break;
    }
    ssize_t w = send(c->cfd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
    if (w > 0) {
      b->off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    c->c_wr_err = 1;
    pgtls_set_reason_errno(c, w < 0 ? errno : EPIPE);
    b->off = b->len = 0;
    return -1;
  }
  if (b->len > b->off) return c->c_wr_err ? -1 : 1;
  buf_settle(b);
  return c->c_wr_err ? -1 : 0;
}

/* One read(cfd) into the incoming buffer. 1 got bytes, 0 would block (or the buffer is full), -1 EOF/error. */
int pgtls_read_client(pgtls_conn *c) {
  if (c->cfd < 0 || c->c_rd_eof) {
    c->c_rd_eof = 1;
    return -1;
  }
  if (c->in.len - c->in.off >= PGTLS_CIPHER_CAP) return 0;
  if (buf_reserve(&c->in, PGTLS_IOBUF) != 0) {
    c->c_rd_eof = 1;
    pgtls_set_reason_errno(c, ENOMEM);
    return -1;
  }
  size_t room = c->in.cap - c->in.len;
  ssize_t r;
  do r = read(c->cfd, c->in.p + c->in.len, room);
  while (r < 0 && errno == EINTR);
  if (r > 0) {
    c->in.len += (size_t)r;
    /* a short read drained the socket: wait for the event loop before the next read syscall */
    if ((size_t)r < room) c->c_readable = 0;
    return 1;
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    c->c_readable = 0;
    return 0;
  }
  c->c_readable = 0;
  c->c_rd_eof = 1;
  if (r < 0) pgtls_set_reason_errno(c, errno);
  return -1;
}

static const unsigned char SSL_REQUEST[8] = {0, 0, 0, 8, 4, 210, 22, 47}; /* length 8, code 80877103 */

int pgtls_negotiate_step(pgtls_conn *c, int *want) {
  *want = 0;
  for (int i = 0; i < MAX_TURNS; i++) {
    size_t n = c->in.len - c->in.off;
    size_t k = n < sizeof SSL_REQUEST ? n : sizeof SSL_REQUEST;
    if (memcmp(c->in.p ? c->in.p + c->in.off : SSL_REQUEST, SSL_REQUEST, k) != 0 || n > sizeof SSL_REQUEST)
      return 2;
    if (n == sizeof SSL_REQUEST) {
      /* The request alone (nothing behind it in what one read returned): answer 'S', then TLS reads the socket. */
      c->in.off = c->in.len = 0;
      if (buf_reserve(&c->out, 1) != 0) return 2;
      c->out.p[c->out.len++] = 'S';
      c->phase = PH_HANDSHAKE;
      return 1;
    }
    if (c->c_rd_eof) return 2;
    if (!c->c_readable) break;
    if (pgtls_read_client(c) < 0) return 2; /* EOF or an error: JavaScript's socket sees it too */
  }
  *want = WANT_CR;
  return 0;
}

int pgtls_handshake_step(pgtls_conn *c, int *want) {
  *want = 0;
  for (int i = 0; i < MAX_TURNS; i++) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    int fl = pgtls_flush(c); /* our flight, or the alert that ends a failed handshake */
    if (r == 1) {
      c->phase = PH_STREAM;
      return 1;
    }
    if (e == SSL_ERROR_WANT_READ) {
      if (fl < 0) return -1;
      if (c->c_rd_eof) {
        /* PostgreSQL: "could not accept SSL connection: EOF detected" */
        if (!c->reason[0]) snprintf(c->reason, sizeof c->reason, "EOF detected");
        return -1;
      }
      if (c->c_readable) {
        int rr = pgtls_read_client(c);
        if (rr != 0) continue; /* bytes, or EOF which the next turn reports */
      }
      *want = WANT_CR | (fl == 1 ? WANT_CW : 0);
      return 0;
    }
    c->tls_fatal = 1;
    if (e == SSL_ERROR_SSL) pgtls_set_reason_from_queue(c, "no SSL error reported");
    else if (!c->reason[0]) snprintf(c->reason, sizeof c->reason, "EOF detected");
    return -1;
  }
  *want = WANT_CW;
  return 0;
}

long pgtls_stream_read(pgtls_conn *c, unsigned char *out, size_t cap, int *want) {
  *want = 0;
  if (c->c_tls_eof || c->tls_fatal) return -1;
  int icap = cap > INT32_MAX ? INT32_MAX : (int)cap;
  /* Once per call, not per turn (~170 instructions each): a turn that does not return either read or waited, and
   * neither queues an error; only a fatal error does, and that ends the stream. */
  ERR_clear_error();
  for (int i = 0; i < MAX_TURNS; i++) {
    int r = SSL_read(c->ssl, out, icap);
    if (r > 0) {
      pgtls_flush(c);
      return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
      int fl = pgtls_flush(c);
      if (c->c_rd_eof) {
        c->c_tls_eof = 1; /* the client closed without close_notify: libpq does that */
        return -1;
      }
      if (c->c_readable) {
        int rr = pgtls_read_client(c);
        if (rr != 0) continue;
      }
      *want = WANT_CR | (fl == 1 ? WANT_CW : 0);
      return 0;
    }
    c->c_tls_eof = 1;
    if (e != SSL_ERROR_ZERO_RETURN) {
      c->tls_fatal = 1;
      pgtls_set_reason_from_queue(c, "no SSL error reported");
      pgtls_flush(c);
    }
    return -1;
  }
  *want = WANT_CW;
  return 0;
}

int pgtls_stream_write(pgtls_conn *c, const unsigned char *p, size_t n) {
  if (c->tls_fatal || c->c_wr_err || c->closing) return -1;
  while (n > 0) {
    int chunk = n > PGTLS_IOBUF ? PGTLS_IOBUF : (int)n;
    ERR_clear_error();
    /* into a memory BIO: all or a fatal error, never WANT_WRITE */
    int r = SSL_write(c->ssl, p, chunk);
    if (r <= 0) {
      c->tls_fatal = 1;
      pgtls_set_reason_from_queue(c, "no SSL error reported");
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  if (pgtls_flush(c) < 0) return -1;
  return pgtls_out_pending(c) < PGTLS_CIPHER_CAP ? 1 : 0;
}

void pgtls_stream_end(pgtls_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  if (!c->tls_fatal) {
    ERR_clear_error();
    SSL_shutdown(c->ssl); /* queues close_notify; we do not wait for the client's */
    ERR_clear_error();
  }
  pgtls_flush(c);
}

void pgtls_conn_trim(pgtls_conn *c) {
  if (c->in.off == c->in.len && c->in.p) {
    free(c->in.p);
    memset(&c->in, 0, sizeof c->in);
  }
  if (c->out.off == c->out.len && c->out.p) {
    free(c->out.p);
    memset(&c->out, 0, sizeof c->out);
  }
  if (c->tx && c->phase != PH_TX) {
    free(c->tx);
    c->tx = NULL;
  }
  if (c->up && c->up_len == 0) {
    free(c->up);
    c->up = NULL;
    c->up_cap = c->up_off = 0;
  }
  /* SSL_free_buffers refuses (returns 0) while a record is partly read or written. Before OpenSSL 3.0.14 it could
   * free a buffer still in use (CVE-2024-4741), so older releases keep their buffers. */
  if (c->ssl && !c->tls_fatal && OpenSSL_version_num() >= 0x300000e0L) SSL_free_buffers(c->ssl);
}

/* SSL_read of up to `cap` plaintext bytes from the client into `out`, for the relays (splice, transaction relay).
 * Returns the count (> 0), or 0 when there is nothing now: then the client's ciphertext was read if the fd was
 * readable, or its TLS ended (c_tls_eof; tls_fatal with the reason if not by close_notify). Sets *progress when
 * anything happened. */
int pgtls_read_plain(pgtls_conn *c, unsigned char *out, size_t cap, int *progress) {
  int r = SSL_read(c->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
  if (r > 0) {
    *progress = 1;
    return r;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) {
    if (c->c_rd_eof) {
      c->c_tls_eof = 1;
      *progress = 1;
    } else if (c->c_readable && pgtls_read_client(c) != 0) {
      *progress = 1;
    }
    return 0;
  }
  c->c_tls_eof = 1;
  if (e != SSL_ERROR_ZERO_RETURN) {
    c->tls_fatal = 1;
    pgtls_set_reason_from_queue(c, "no SSL error reported");
  }
  *progress = 1;
  return 0;
}

int pgtls_splice_start(pgtls_conn *c, int bfd, const unsigned char *to_backend, size_t tb_len,
                       const unsigned char *to_client, size_t tc_len) {
  c->up_cap = tb_len > PGTLS_IOBUF ? tb_len : PGTLS_IOBUF;
  c->up = malloc(c->up_cap);
  if (!c->up) return -1;
  if (tb_len) memcpy(c->up, to_backend, tb_len);
  c->up_off = 0;
  c->up_len = tb_len;
  c->from_client += tb_len;
  c->bfd = bfd;
  c->b_readable = 1;
  c->c_readable = 1;
  c->phase = PH_SPLICE;
  if (tc_len) {
    if (pgtls_stream_write(c, to_client, tc_len) < 0) return -1;
    c->from_backend += tc_len;
  }
  return 0;
}

int pgtls_splice_pump(pgtls_conn *c, int *want) {
  *want = 0;
  int progress = 1;
  int turns = 0;
  /* SSL_get_error() reads OpenSSL's error queue, so it must hold nothing stale. Clearing it costs ~170
   * instructions (16 slots), so it is done once per pump rather than before every call: inside the pump only a
   * fatal error queues anything, and that ends the relay (pgtls_set_reason_from_queue() clears it again). */
  ERR_clear_error();
  for (; turns < MAX_TURNS && progress; turns++) {
    progress = 0;
    /* client -> backend: what SSL_read gave us, written out before reading more (bounded by one buffer) */
    if (c->up_off < c->up_len && !c->b_err) {
      ssize_t w = send(c->bfd, c->up + c->up_off, c->up_len - c->up_off, MSG_NOSIGNAL);
      if (w > 0) {
        c->up_off += (size_t)w;
        if (c->up_off == c->up_len) c->up_off = c->up_len = 0;
        progress = 1;
      } else if (w < 0 && errno == EINTR) {
        progress = 1;
      } else if (!(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        c->b_err = 1;
        pgtls_set_reason_errno(c, w < 0 ? errno : EPIPE);
      }
    }
    if (c->up_len == 0 && !c->c_tls_eof && !c->b_err && !c->up) {
      c->up = malloc(PGTLS_IOBUF);
      if (!c->up) {
        c->b_err = 1;
        pgtls_set_reason_errno(c, ENOMEM);
      } else {
        c->up_cap = PGTLS_IOBUF;
      }
    }
    if (c->up_len == 0 && !c->c_tls_eof && !c->b_err) {
      int r = pgtls_read_plain(c, c->up, c->up_cap, &progress);
      if (r > 0) {
        c->up_len = (size_t)r;
        c->from_client += (uint64_t)r;
      }
    }
    /* the client is done: pass the end on, PostgreSQL then ends its side */
    if (c->c_tls_eof && c->up_len == 0 && !c->b_wr_shut && !c->b_err) {
      shutdown(c->bfd, SHUT_WR);
      c->b_wr_shut = 1;
      progress = 1;
    }
    /* backend -> client: read only while the ciphertext backlog is under its cap */
    if (c->b_readable && !c->b_rd_eof && !c->b_err && !c->tls_fatal && !c->c_wr_err &&
        pgtls_out_pending(c) < PGTLS_CIPHER_CAP) {
      ssize_t r = read(c->bfd, scratch, sizeof scratch);
      if (r > 0) {
        if (SSL_write(c->ssl, scratch, (int)r) <= 0) {
          c->tls_fatal = 1;
          pgtls_set_reason_from_queue(c, "no SSL error reported");
        } else {
          c->from_backend += (uint64_t)r;
        }
        if ((size_t)r < sizeof scratch) c->b_readable = 0;
        progress = 1;
      } else if (r == 0) {
        c->b_rd_eof = 1;
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify after the backend's last bytes */
        ERR_clear_error();
        progress = 1;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->b_readable = 0;
      } else if (errno != EINTR) {
        c->b_rd_eof = 1;
        c->b_err = 1;
        pgtls_set_reason_errno(c, errno);
        progress = 1;
      }
    }
    size_t before = pgtls_out_pending(c);
    if (before > 0 && !c->c_wr_err) {
      pgtls_flush(c);
      if (pgtls_out_pending(c) < before || c->c_wr_err) progress = 1;
    }
  }
  size_t out = pgtls_out_pending(c);
  if (c->b_err || c->c_wr_err || c->tls_fatal) return 1;
  if (c->b_rd_eof && out == 0) return 1;
  if (!c->c_tls_eof && !c->c_rd_eof && c->up_len == 0) *want |= WANT_CR;
  if (out > 0) *want |= WANT_CW;
  if (!c->b_rd_eof && out < PGTLS_CIPHER_CAP) *want |= WANT_BR;
  if (c->up_off < c->up_len) *want |= WANT_BW;
  /* stopped by the turn bound with work left: come back on the next loop iteration (sockets are writable) */
  if (progress) *want |= WANT_CW | WANT_BW;
  return 0;
}
