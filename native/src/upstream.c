/* TLS to the backend and the TLS<->TLS relay; see upstream.h for why this sits on engine.c's connection. */
#include "upstream.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "context.h"

/* Turns per pump, as engine.c: a bound that keeps one busy relay from starving the loop (the caller comes back). */
#define MAX_TURNS 64

/* Plaintext between SSL_read on one side and SSL_write on the other: consumed within the turn that read it, so one
 * buffer per thread serves every relay (sessions run on their loop's thread only). */
static __thread unsigned char plain[PGTLS_IOBUF];

static const unsigned char alpn_postgresql[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

static int requested_idx = -1;
static pthread_once_t requested_once = PTHREAD_ONCE_INIT;
static void make_requested_idx(void) { requested_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* libpq's cert_cb: OpenSSL calls it on the client only when the server sent a CertificateRequest. Returning 1 goes
 * on with whatever certificate the context holds (none: an empty Certificate message, as libpq). */
static int cert_cb(SSL *ssl, void *arg) {
  (void)arg;
  if (requested_idx >= 0) SSL_set_ex_data(ssl, requested_idx, (void *)1);
  return 1;
}

int pgtls_upstream_cert_requested(const SSL *ssl) {
  return requested_idx >= 0 && SSL_get_ex_data(ssl, requested_idx) != NULL;
}

static void fail(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, errlen, "%s%s%s", what, what[0] && r ? ": " : "", r ? r : (what[0] ? "" : "unknown error"));
  ERR_clear_error();
}

/* Certificates and CRLs of a PEM text into the store; -1 when the text holds an unreadable block. */
static int load_pem_into(X509_STORE *st, const char *pem, int *crls) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b) return -1;
  STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, pgtls_no_password, NULL);
  BIO_free(b);
  if (!infos) return -1;
  for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
    X509_INFO *in = sk_X509_INFO_value(infos, i);
    /* the same certificate twice (a root file and the system store) is not an error, as for Node's `ca` */
    if (in->x509 && X509_STORE_add_cert(st, in->x509) != 1) ERR_clear_error();
    if (in->crl) {
      if (X509_STORE_add_crl(st, in->crl) != 1) ERR_clear_error();
      (*crls)++;
    }
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  return 0;
}

static int use_cert_and_key(SSL_CTX *ctx, const pgtls_client_opts *o, char *err, size_t errlen) {
  BIO *b = BIO_new_mem_buf(o->cert_pem, -1);
  X509 *leaf = b ? PEM_read_bio_X509(b, NULL, pgtls_no_password, NULL) : NULL;
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    X509_free(leaf);
    BIO_free(b);
    fail(err, errlen, "could not load client certificate");
    return -1;
  }
  X509_free(leaf);
  for (int i = 0; i < 64; i++) {
    X509 *c = PEM_read_bio_X509(b, NULL, pgtls_no_password, NULL);
    if (!c) break;
    if (SSL_CTX_add0_chain_cert(ctx, c) != 1) {
      X509_free(c);
      BIO_free(b);
      fail(err, errlen, "could not load client certificate chain");
      return -1;
    }
  }
  BIO_free(b);
  ERR_clear_error(); /* the reader's "no start line" after the last certificate */
  BIO *kb = BIO_new_mem_buf(o->key_pem, (int)o->key_pem_len);
  EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, pgtls_no_password, NULL) : NULL;
  BIO_free(kb);
  /* SSL_CTX_use_PrivateKey checks the key against the certificate: OpenSSL's "key values mismatch" as Node's */
  if (!k || SSL_CTX_use_PrivateKey(ctx, k) != 1) {
    EVP_PKEY_free(k);
    fail(err, errlen, "");
    return -1;
  }
  EVP_PKEY_free(k);
  return 0;
}

SSL_CTX *pgtls_client_ctx_new(const pgtls_client_opts *o, char *err, size_t errlen) {
  pthread_once(&requested_once, make_requested_idx);
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return fail(err, errlen, "could not create SSL context"), NULL;
  if (o->min_version > 0 && !SSL_CTX_set_min_proto_version(ctx, o->min_version)) {
    fail(err, errlen, "could not set minimum SSL protocol version");
    goto bad;
  }
  if (!SSL_CTX_set_max_proto_version(ctx, o->max_version > 0 ? o->max_version : 0)) {
    fail(err, errlen, "could not set maximum SSL protocol version");
    goto bad;
  }
  if (SSL_CTX_set_cipher_list(ctx, o->ciphers && o->ciphers[0] ? o->ciphers : "DEFAULT") != 1) {
    fail(err, errlen, "could not set the cipher list");
    goto bad;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* The chain is verified during the handshake and the result kept (SSL_get_verify_result); libpq's decisions on
   * it are made after, in JavaScript, with the same texts as on Node's tls (negotiate.ts). */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  int crls = 0;
  if (o->ca_pem && o->ca_pem[0] && load_pem_into(st, o->ca_pem, &crls) != 0) {
    fail(err, errlen, "could not load root certificates");
    goto bad;
  }
  if (o->crl_pem && o->crl_pem[0] && load_pem_into(st, o->crl_pem, &crls) != 0) {
    fail(err, errlen, "could not load certificate revocation lists");
    goto bad;
  }
  if (o->crl_check) X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  if (o->cert_pem && o->cert_pem[0] && use_cert_and_key(ctx, o, err, errlen) != 0) goto bad;
  if (SSL_CTX_set_alpn_protos(ctx, alpn_postgresql, sizeof alpn_postgresql) != 0) {
    fail(err, errlen, "could not set ALPN");
    goto bad;
  }
  SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
  ERR_clear_error();
  return ctx;
bad:
  SSL_CTX_free(ctx);
  return NULL;
}

int pgtls_upstream_setup(pgtls_conn *c, const char *servername) {
  if (!c->ssl || c->phase != PH_HANDSHAKE) return -1;
  SSL_set_connect_state(c->ssl);
  if (servername && servername[0] && SSL_set_tlsext_host_name(c->ssl, servername) != 1) {
    ERR_clear_error();
    return -1;
  }
  return 0;
}

void pgtls_conn_move(pgtls_conn *dst, pgtls_conn *src, int newfd) {
  *dst = *src;
  dst->cfd = newfd;
  dst->bfd = -1;
  if (dst->rbio) BIO_set_data(dst->rbio, &dst->in);
  if (dst->wbio) BIO_set_data(dst->wbio, &dst->out);
  int oldfd = src->cfd, phase = src->phase;
  memset(src, 0, sizeof *src);
  src->cfd = oldfd;
  src->bfd = -1;
  src->phase = phase;
}

/* Encrypt plaintext for one side (into its out buffer: all of it, or a fatal error). */
static int put(pgtls_conn *to, const unsigned char *p, size_t n) {
  while (n > 0) {
    int chunk = n > PGTLS_IOBUF ? PGTLS_IOBUF : (int)n;
    int r = SSL_write(to->ssl, p, chunk);
    if (r <= 0) {
      to->tls_fatal = 1;
      pgtls_set_reason_from_queue(to, "no SSL error reported");
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int pgtls_tls_splice_start(pgtls_conn *c, pgtls_conn *b, const unsigned char *to_backend, size_t tb_len,
                           const unsigned char *to_client, size_t tc_len) {
  c->phase = PH_SPLICE_TLS;
  b->phase = PH_SPLICE_TLS;
  c->c_readable = 1;
  b->c_readable = 1;
  c->reading = b->reading = 0;
  ERR_clear_error();
  if (tb_len) {
    if (b->tls_fatal || put(b, to_backend, tb_len) != 0) return -1;
    c->from_client += tb_len;
  }
  if (tc_len) {
    if (c->tls_fatal || put(c, to_client, tc_len) != 0) return -1;
    c->from_backend += tc_len;
  }
  return 0;
}

/* Nothing to decrypt on this side and its socket not reported readable: SSL_read would only say WANT_READ, for
 * about a thousand instructions, on every turn of every pump. */
static int idle(pgtls_conn *x) {
  return !x->c_readable && !x->c_rd_eof && x->in.off == x->in.len && !SSL_has_pending(x->ssl);
}

/* One side's next plaintext into `plain`: the socket is read first when nothing is buffered (an SSL_read that could
 * only say WANT_READ first costs as much again), and SSL_read is skipped when there is nothing to decrypt. */
static int next_plain(pgtls_conn *x, int *progress) {
  if (x->c_readable && !x->c_rd_eof && x->in.off == x->in.len && !SSL_has_pending(x->ssl) &&
      pgtls_read_client(x) != 0)
    *progress = 1;
  if (idle(x)) return 0;
  return pgtls_read_plain(x, plain, sizeof plain, progress);
}

/* Flush one side's ciphertext; sets *progress when some went out or the side failed. */
static void flush_side(pgtls_conn *x, int *progress) {
  size_t before = pgtls_out_pending(x);
  if (before == 0 || x->c_wr_err) return;
  pgtls_flush(x);
  if (pgtls_out_pending(x) < before || x->c_wr_err) *progress = 1;
}

/* Send close_notify on a side (once), after the other side's last bytes. */
static void close_side(pgtls_conn *x, int *progress) {
  if (x->closing) return;
  x->closing = 1;
  if (!x->tls_fatal) {
    SSL_shutdown(x->ssl);
    ERR_clear_error();
  }
  *progress = 1;
}

int pgtls_tls_splice_pump(pgtls_conn *c, pgtls_conn *b, int *want) {
  *want = 0;
  if (c->b_readable) { /* the addon's backend poll reports into the client session's hint */
    b->c_readable = 1;
    c->b_readable = 0;
  }
  int progress = 1;
  /* As the plain splice: the queue must hold nothing stale for SSL_get_error(); only a fatal error queues anything
   * inside the pump, and that ends the relay. */
  ERR_clear_error();
  for (int turns = 0; turns < MAX_TURNS && progress; turns++) {
    progress = 0;
    /* client -> backend, only while the backend's ciphertext backlog is under its cap */
    if (!c->c_tls_eof && !b->tls_fatal && !b->c_wr_err && !b->closing && pgtls_out_pending(b) < PGTLS_CIPHER_CAP) {
      int r = next_plain(c, &progress);
      if (r > 0 && put(b, plain, (size_t)r) == 0) c->from_client += (uint64_t)r;
    }
    /* the client is done: close_notify to PostgreSQL, which then ends the session; its FIN once that is out */
    if (c->c_tls_eof && !b->closing) close_side(b, &progress);
    /* backend -> client, only while the client's backlog is under its cap */
    if (!b->c_tls_eof && !c->tls_fatal && !c->c_wr_err && !c->closing && pgtls_out_pending(c) < PGTLS_CIPHER_CAP) {
      int r = next_plain(b, &progress);
      if (r > 0 && put(c, plain, (size_t)r) == 0) c->from_backend += (uint64_t)r;
    }
    /* the backend is done (close_notify or EOF): close_notify to the client after its last bytes */
    if (b->c_tls_eof && !c->closing) close_side(c, &progress);
    flush_side(b, &progress);
    flush_side(c, &progress);
    if (b->closing && !c->b_wr_shut && pgtls_out_pending(b) == 0 && b->cfd >= 0 && !b->c_wr_err) {
      shutdown(b->cfd, SHUT_WR);
      c->b_wr_shut = 1;
    }
  }
  size_t co = pgtls_out_pending(c), bo = pgtls_out_pending(b);
  int over = c->c_wr_err || b->c_wr_err || c->tls_fatal || b->tls_fatal || (b->c_tls_eof && co == 0);
  if (over) {
    /* the reason the addon logs is the client session's: take the backend's when the end came from there */
    if (!c->reason[0] && b->reason[0]) snprintf(c->reason, sizeof c->reason, "%s", b->reason);
    return 1;
  }
  if (!c->c_tls_eof && !c->c_rd_eof && bo < PGTLS_CIPHER_CAP) *want |= WANT_CR;
  if (co > 0) *want |= WANT_CW;
  if (!b->c_tls_eof && !b->c_rd_eof && co < PGTLS_CIPHER_CAP) *want |= WANT_BR;
  if (bo > 0) *want |= WANT_BW;
  if (progress) *want |= WANT_CW | WANT_BW; /* stopped by the turn bound with work left: come back next turn */
  return 0;
}
