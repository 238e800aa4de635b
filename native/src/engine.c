/* The connection engine; see engine.h for why it moves bytes itself between memory BIOs and sockets. */
#include "engine.h"

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

static void set_reason_errno(pgtls_conn *c, int err) {
  if (!c->reason[0]) snprintf(c->reason, sizeof c->reason, "%s", strerror(err));
}

int pgtls_conn_init(pgtls_conn *c, SSL_CTX *ctx, int cfd, const unsigned char *initial, size_t initial_len) {
  memset(c, 0, sizeof *c);
  c->cfd = cfd;
  c->bfd = -1;
  c->c_readable = 1;
  c->ssl = SSL_new(ctx);
  if (!c->ssl) return -1;
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->rbio || !c->wbio) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    c->rbio = c->wbio = NULL;
    return -1;
  }
  /* An empty memory BIO means "no data yet", never end of file: EOF is what read(cfd) says. */
  BIO_set_mem_eof_return(c->rbio, -1);
  BIO_set_mem_eof_return(c->wbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs now */
  SSL_set_accept_state(c->ssl);
  if (initial_len > 0 && pgtls_feed(c, initial, initial_len) != 0) return -1;
  return 0;
}

void pgtls_conn_free(pgtls_conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  c->rbio = c->wbio = NULL;
  free(c->up);
  c->up = NULL;
  c->up_cap = c->up_len = c->up_off = 0;
  if (c->cfd >= 0) close(c->cfd);
  if (c->bfd >= 0) close(c->bfd);
  c->cfd = c->bfd = -1;
  c->phase = PH_DONE;
}

int pgtls_feed(pgtls_conn *c, const unsigned char *p, size_t n) {
  while (n > 0) {
    int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
    int w = BIO_write(c->rbio, p, chunk);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

size_t pgtls_out_pending(pgtls_conn *c) { return c->wbio ? BIO_ctrl_pending(c->wbio) : 0; }

/* Drop n bytes from the front of the outgoing memory BIO (they were written to the socket). */
static void out_consume(pgtls_conn *c, size_t n) {
  while (n > 0) {
    size_t k = n > sizeof c->scratch ? sizeof c->scratch : n;
    int r = BIO_read(c->wbio, c->scratch, (int)k);
    if (r <= 0) return;
    n -= (size_t)r;
  }
}

int pgtls_flush(pgtls_conn *c) {
  for (int i = 0; i < MAX_TURNS; i++) {
    char *p = NULL;
    long n = BIO_get_mem_data(c->wbio, &p);
    if (n <= 0) return 0;
    if (c->cfd < 0 || c->c_wr_err) {
      out_consume(c, (size_t)n); /* nobody to send to (fuzzing, or the client is gone) */
      return c->c_wr_err ? -1 : 0;
    }
    ssize_t w = send(c->cfd, p, (size_t)n, MSG_NOSIGNAL);
    if (w > 0) {
      out_consume(c, (size_t)w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    c->c_wr_err = 1;
    set_reason_errno(c, w < 0 ? errno : EPIPE);
    return -1;
  }
  return pgtls_out_pending(c) > 0 ? 1 : 0;
}

/* One read(cfd) into the incoming BIO. 1 got bytes, 0 would block (or the BIO is full), -1 EOF/error. */
static int read_client(pgtls_conn *c) {
  if (c->cfd < 0 || c->c_rd_eof) {
    c->c_rd_eof = 1;
    return -1;
  }
  if (BIO_ctrl_pending(c->rbio) >= PGTLS_CIPHER_CAP) return 0;
  ssize_t r;
  do r = read(c->cfd, c->scratch, sizeof c->scratch);
  while (r < 0 && errno == EINTR);
  if (r > 0) {
    if (pgtls_feed(c, c->scratch, (size_t)r) != 0) {
      c->c_rd_eof = 1;
      set_reason_errno(c, ENOMEM);
      return -1;
    }
    /* a short read drained the socket: wait for the event loop before the next read syscall */
    if ((size_t)r < sizeof c->scratch) c->c_readable = 0;
    return 1;
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    c->c_readable = 0;
    return 0;
  }
  c->c_rd_eof = 1;
  c->c_readable = 0;
  if (r < 0) set_reason_errno(c, errno);
  return -1;
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
        int rr = read_client(c);
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
  for (int i = 0; i < MAX_TURNS; i++) {
    ERR_clear_error();
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
        int rr = read_client(c);
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
        set_reason_errno(c, w < 0 ? errno : EPIPE);
      }
    }
    if (c->up_len == 0 && !c->c_tls_eof && !c->b_err) {
      ERR_clear_error();
      int cap = c->up_cap > INT32_MAX ? INT32_MAX : (int)c->up_cap;
      int r = SSL_read(c->ssl, c->up, cap);
      if (r > 0) {
        c->up_len = (size_t)r;
        c->from_client += (uint64_t)r;
        progress = 1;
      } else {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
          if (c->c_rd_eof) {
            c->c_tls_eof = 1;
            progress = 1;
          } else if (c->c_readable && read_client(c) != 0) {
            progress = 1;
          }
        } else {
          c->c_tls_eof = 1;
          if (e != SSL_ERROR_ZERO_RETURN) {
            c->tls_fatal = 1;
            pgtls_set_reason_from_queue(c, "no SSL error reported");
          }
          progress = 1;
        }
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
      ssize_t r = read(c->bfd, c->scratch, sizeof c->scratch);
      if (r > 0) {
        ERR_clear_error();
        if (SSL_write(c->ssl, c->scratch, (int)r) <= 0) {
          c->tls_fatal = 1;
          pgtls_set_reason_from_queue(c, "no SSL error reported");
        } else {
          c->from_backend += (uint64_t)r;
        }
        if ((size_t)r < sizeof c->scratch) c->b_readable = 0;
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
        set_reason_errno(c, errno);
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
