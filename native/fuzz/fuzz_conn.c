/*
 * libFuzzer harness over the addon's input handling (engine.c + context.c), built with clang -fsanitize=fuzzer,
 * address,undefined against the system's libssl of the same OpenSSL version as Node's (a stand-alone binary cannot
 * borrow Node's). First input byte picks the mode:
 *   0: the bytes are the client's first flight (fed like direct TLS's `initial`), handshake and stream read after;
 *      or (a flag bit of the same byte) the negotiation before TLS reads the first few of them (an SSLRequest, or not);
 *   1: a real TLS 1.3 handshake over a socketpair, then the bytes are written raw after it (records, garbage,
 *      alerts) and the stream-phase reader runs;
 *   2: as 1, then a splice to a backend socketpair: half the bytes come as client records, half from the backend;
 *   3: as 1, then the transaction relay (txrelay.c) to a server socketpair: half the bytes are the client's
 *      plaintext (in valid records, so the message framing is what gets fuzzed; some as the JavaScript-held start),
 *      half the server's; after a handback it starts again on what was left, as the JavaScript relay would.
 * Between steps the idle trim (pgtls_conn_trim, what the addon's sweep does to a quiet session) runs every other
 * turn, so buffers are given back and taken again with records half-read in either direction.
 * Build and run: node native/fuzz/run.mjs [seconds]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../src/context.h"
#include "../src/engine.h"
#include "../src/txrelay.h"

static SSL_CTX *server_plain, *server_ca, *client_ctx;

static char *pem_of(int (*w)(BIO *, void *), void *obj) {
  BIO *b = BIO_new(BIO_s_mem());
  w(b, obj);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *s = malloc((size_t)n + 1);
  memcpy(s, p, (size_t)n);
  s[n] = 0;
  BIO_free(b);
  return s;
}
static int write_x509(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }
static int write_key(BIO *b, void *k) { return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pkey);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_sign(x, pkey, EVP_sha256());
  char *cert = pem_of(write_x509, x), *key = pem_of(write_key, pkey);
  char ca_path[] = "/tmp/pgtls-fuzz-ca-XXXXXX";
  int fd = mkstemp(ca_path);
  if (fd < 0 || write(fd, cert, strlen(cert)) < 0) abort();
  close(fd);
  pgtls_ctx_opts o = {0};
  o.cert_chain_pem = cert;
  o.key_pem = (const unsigned char *)key;
  o.key_pem_len = strlen(key);
  o.ca_file = "";
  o.crl_file = "";
  o.crl_dir = "";
  o.ciphers = "HIGH:MEDIUM:+3DES:!aNULL";
  o.tls13_ciphers = "";
  o.groups = "X25519:prime256v1";
  o.dh_params_pem = "";
  o.min_version = TLS1_2_VERSION;
  char err[512];
  server_plain = pgtls_ctx_new(&o, err, sizeof err);
  o.ca_file = ca_path; /* client certificates requested and verified: the verify path runs too */
  server_ca = pgtls_ctx_new(&o, err, sizeof err);
  if (!server_plain || !server_ca) {
    fprintf(stderr, "context: %s\n", err);
    abort();
  }
  client_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
  static const unsigned char alpn[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};
  SSL_CTX_set_alpn_protos(client_ctx, alpn, sizeof alpn);
  free(cert);
  free(key);
  X509_free(x);
  EVP_PKEY_free(pkey);
  return 0;
}

static int handshake(pgtls_conn *c, SSL *cl) {
  int done_s = 0, done_c = 0;
  for (int i = 0; i < 50 && !(done_s && done_c); i++) {
    if (!done_c) {
      int r = SSL_do_handshake(cl);
      if (r == 1) done_c = 1;
      else if (SSL_get_error(cl, r) != SSL_ERROR_WANT_READ) return -1;
    }
    if (!done_s) {
      int want;
      c->c_readable = 1;
      int r = pgtls_handshake_step(c, &want);
      if (r == 1) done_s = 1;
      else if (r < 0) return -1;
    }
  }
  return done_s && done_c ? 0 : -1;
}

static void drain_peers(SSL *cl, int sfd) {
  char sink[4096];
  while (read(sfd, sink, sizeof sink) > 0) {
  }
  while (SSL_read(cl, sink, sizeof sink) > 0) {
  }
}

static void fuzz_tx(pgtls_conn *c, SSL *cl, int cfd, const uint8_t *cd, size_t cn, const uint8_t *sd, size_t sn,
                    int track, int session) {
  (void)cfd;
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0) abort();
  size_t first = cn > 16 ? 16 : cn; /* the bytes JavaScript hands over with the start */
  for (size_t at = first; at < cn;) {
    size_t k = cn - at > 4000 ? 4000 : cn - at;
    if (SSL_write(cl, cd + at, (int)k) <= 0) break;
    at += k;
  }
  if (sn && write(sp[1], sd, sn) < 0) {
  }
  unsigned char rest[PGTLS_IOBUF * 2];
  size_t rest_len = first;
  memcpy(rest, cd, first);
  int want;
  /* the lane's renames (txrelay.c rename_stmt): client names that grow, shrink and stay, and one the server lacks */
  static const unsigned char cmap[] = "s1\0S_renamed_to_a_longer_server_name_0\0a_long_client_statement_name\0S\0"
                                      "same\0same\0gone\0S_not_prepared\0";
  static const unsigned char sset[] = "S_renamed_to_a_longer_server_name_0\0S\0same\0";
  for (int round = 0; round < 4; round++) {
    if (pgtls_tx_start(c, sp[0], track, session, rest, rest_len) != 0) break;
    if (track && (round % 2) == 0) {
      c->tx->cmap = cmap;
      c->tx->cmap_len = sizeof cmap - 1;
      c->tx->sset = sset;
      c->tx->sset_len = sizeof sset - 1;
    }
    int done = 0;
    for (int i = 0; i < 32 && !done; i++) {
      c->c_readable = c->b_readable = 1;
      done = pgtls_tx_pump(c, &want) == 1;
      if (i % 2) pgtls_conn_trim(c);
      drain_peers(cl, sp[1]);
      if (i == 8) shutdown(sp[1], SHUT_WR);
    }
    if (!done) break;
    pgtls_tx *t = c->tx;
    /* what JavaScript would get back, then a restart past the message it handled */
    rest_len = c->up ? c->up_len - t->up_scan : 0;
    if (rest_len > sizeof rest) rest_len = sizeof rest;
    if (rest_len) memcpy(rest, c->up + t->up_scan, rest_len);
    size_t skip = rest_len >= 5 ? 5 : rest_len;
    memmove(rest, rest + skip, rest_len - skip);
    rest_len -= skip;
    int reason = t->reason;
    pgtls_tx_finish(c);
    if (reason == TX_CLIENT_END || reason == TX_SERVER_END) break;
  }
  if (c->phase == PH_TX) pgtls_tx_finish(c);
  close(sp[0]);
  close(sp[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 4;
  SSL_CTX *ctx = (data[0] / 4) % 2 ? server_ca : server_plain;
  int track = (data[0] / 8) % 2;
  unsigned sel = data[0];
  int session = (data[0] / 16) % 2; /* mode 3: session pooling's relay (no boundary, ParameterStatus passes) */
  data++;
  size--;
  pgtls_conn c;
  unsigned char out[PGTLS_IOBUF];
  int want;
  if (mode == 0) {
    /* Half the time the connection starts before TLS (PH_NEGOTIATE): the first `split` bytes are what one read
     * returned; an SSLRequest alone there lets the rest go to the handshake. */
    size_t split = (sel / 16) % 2 && size ? (size_t)(sel / 32) + 6 : 0;
    if (split > size) split = size;
    int ok = pgtls_conn_init(&c, ctx, -1, data, split ? split : size) == 0;
    if (ok && split) {
      c.phase = PH_NEGOTIATE;
      ok = pgtls_negotiate_step(&c, &want) == 1 && pgtls_feed(&c, data + split, size - split) == 0;
    }
    if (ok && pgtls_handshake_step(&c, &want) == 1) {
      pgtls_conn_trim(&c);
      for (int i = 0; i < 8 && pgtls_stream_read(&c, out, sizeof out, &want) > 0; i++) {
      }
    }
    pgtls_conn_free(&c);
    ERR_clear_error();
    return 0;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) abort();
  SSL *cl = SSL_new(client_ctx);
  SSL_set_fd(cl, sv[1]);
  SSL_set_connect_state(cl);
  if (pgtls_conn_init(&c, ctx, sv[0], NULL, 0) != 0 || handshake(&c, cl) != 0) {
    pgtls_conn_free(&c);
    SSL_free(cl);
    close(sv[1]);
    ERR_clear_error();
    return 0;
  }
  size_t half = mode >= 2 ? size / 2 : size;
  if (mode == 3) {
    fuzz_tx(&c, cl, sv[1], data, half, data + half, size - half, track, session);
    pgtls_conn_free(&c);
    SSL_free(cl);
    close(sv[1]);
    ERR_clear_error();
    return 0;
  }
  /* a valid record first, then the fuzz bytes raw on the wire */
  SSL_write(cl, "Q", 1);
  if (half && write(sv[1], data, half) < 0) {
  }
  if (mode == 1) {
    for (int i = 0; i < 16; i++) {
      c.c_readable = 1;
      if (pgtls_stream_read(&c, out, sizeof out, &want) <= 0 && want == 0) break;
      if (i % 2) pgtls_conn_trim(&c);
    }
    pgtls_stream_write(&c, data, size);
  } else {
    int bp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, bp) != 0) abort();
    if (pgtls_splice_start(&c, bp[0], data, half > 64 ? 64 : half, data + half, (size - half) > 64 ? 64 : size - half) ==
        0) {
      if (size - half && write(bp[1], data + half, size - half) < 0) {
      }
      shutdown(bp[1], SHUT_WR);
      for (int i = 0; i < 32; i++) {
        c.c_readable = c.b_readable = 1;
        if (pgtls_splice_pump(&c, &want) == 1) break;
        if (i % 2) pgtls_conn_trim(&c);
        char sink[4096];
        while (read(bp[1], sink, sizeof sink) > 0) {
        }
        while (SSL_read(cl, sink, sizeof sink) > 0) {
        }
      }
    } else {
      close(bp[0]);
    }
    close(bp[1]);
  }
  pgtls_conn_free(&c);
  SSL_free(cl);
  close(sv[1]);
  ERR_clear_error();
  return 0;
}
