/*
 * libFuzzer harness over TLS to the backend (upstream.c on engine.c), built like fuzz_conn.c (ASan + UBSan, against
 * the system's libssl of Node's OpenSSL version). First input byte picks the mode:
 *   0: the bytes are the server's answer to our ClientHello (what a hostile or broken backend sends first), read by
 *      the connecting side's handshake, and the stream reader after it if the handshake ever completes;
 *   1: real TLS 1.3 handshakes on both hops (a client to our server side, our client side to a server), then the
 *      TLS<->TLS relay (pgtls_tls_splice_pump) with half the bytes written raw after a valid record by the backend
 *      and half by the client, then either side ends; the idle trim runs on both connections every other turn;
 *   2: as 1, with plaintext prefixes for both sides (what JavaScript held) and the backend ending first.
 * Build and run: node native/fuzz/run-upstream.mjs [seconds]
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
#include "../src/upstream.h"

static SSL_CTX *server_ctx, *peer_server, *peer_client, *upstream_ctx;

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

static int accept_all(X509_STORE_CTX *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return 1;
}

/* Seeds for mode 0: a real server's first flight (TLS 1.3 and 1.2) in answer to our ClientHello, written into
 * PGTLS_FUZZ_SEED_DIR when it is set (run-upstream.mjs does, before fuzzing). */
static void write_seeds(const char *dir) {
  for (int v = 0; v < 2; v++) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0) return;
    pgtls_conn b;
    SSL *sv = SSL_new(peer_server);
    SSL_set_max_proto_version(sv, v ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_set_fd(sv, sp[1]);
    SSL_set_accept_state(sv);
    int want;
    if (pgtls_conn_init(&b, upstream_ctx, sp[0], NULL, 0) == 0 && pgtls_upstream_setup(&b, "localhost") == 0) {
      pgtls_handshake_step(&b, &want);
      SSL_do_handshake(sv);
      unsigned char buf[8192];
      buf[0] = 0;
      ssize_t n = read(sp[0], buf + 1, sizeof buf - 1);
      char path[512];
      snprintf(path, sizeof path, "%s/server-flight-%d", dir, v);
      FILE *f = n > 0 ? fopen(path, "wb") : NULL;
      if (f) {
        fwrite(buf, 1, (size_t)n + 1, f);
        fclose(f);
      }
    }
    pgtls_conn_free(&b);
    SSL_free(sv);
    close(sp[1]);
  }
  ERR_clear_error();
}

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
  pgtls_ctx_opts o = {0};
  o.cert_chain_pem = cert;
  o.key_pem = (const unsigned char *)key;
  o.key_pem_len = strlen(key);
  o.ca_file = "";
  o.crl_file = "";
  o.crl_dir = "";
  o.ciphers = "HIGH:MEDIUM:+3DES:!aNULL";
  o.tls13_ciphers = "";
  o.groups = "";
  o.dh_params_pem = "";
  o.min_version = TLS1_2_VERSION;
  char err[512];
  server_ctx = pgtls_ctx_new(&o, err, sizeof err);
  /* our client side, with the root loaded (the chain is verified and its result kept), a client certificate, and
   * a CRL check with no CRL: every path of pgtls_client_ctx_new */
  pgtls_client_opts co = {0};
  co.ca_pem = cert;
  co.crl_pem = "";
  co.cert_pem = cert;
  co.key_pem = (const unsigned char *)key;
  co.key_pem_len = strlen(key);
  co.ciphers = "DEFAULT";
  co.min_version = TLS1_2_VERSION;
  upstream_ctx = pgtls_client_ctx_new(&co, err, sizeof err);
  if (!server_ctx || !upstream_ctx) {
    fprintf(stderr, "context: %s\n", err);
    abort();
  }
  /* the peers: a plain OpenSSL client for our server side, a plain OpenSSL server (asking for a certificate) for
   * our client side */
  peer_client = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(peer_client, SSL_VERIFY_NONE, NULL);
  peer_server = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(peer_server, x);
  SSL_CTX_use_PrivateKey(peer_server, pkey);
  SSL_CTX_set_verify(peer_server, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_cert_verify_callback(peer_server, accept_all, NULL);
  free(cert);
  free(key);
  X509_free(x);
  EVP_PKEY_free(pkey);
  const char *seeds = getenv("PGTLS_FUZZ_SEED_DIR");
  if (seeds) write_seeds(seeds);
  return 0;
}

/* Drive our connection c against an OpenSSL peer p until both finish (or 50 turns). */
static int handshake(pgtls_conn *c, SSL *p) {
  int done_c = 0, done_p = 0;
  for (int i = 0; i < 50 && !(done_c && done_p); i++) {
    if (!done_c) {
      int want;
      c->c_readable = 1;
      int r = pgtls_handshake_step(c, &want);
      if (r == 1) done_c = 1;
      else if (r < 0) return -1;
    }
    if (!done_p) {
      int r = SSL_do_handshake(p);
      if (r == 1) done_p = 1;
      else if (SSL_get_error(p, r) != SSL_ERROR_WANT_READ) return -1;
    }
  }
  return done_c && done_p ? 0 : -1;
}

static void drain(SSL *p) {
  char sink[4096];
  for (int i = 0; i < 64 && SSL_read(p, sink, sizeof sink) > 0; i++) {
  }
}

static void fuzz_splice(const uint8_t *data, size_t size, int mode) {
  int cs[2], bs[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cs) != 0) abort();
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, bs) != 0) abort();
  SSL *cl = SSL_new(peer_client), *sv = SSL_new(peer_server);
  SSL_set_fd(cl, cs[1]);
  SSL_set_connect_state(cl);
  SSL_set_fd(sv, bs[1]);
  SSL_set_accept_state(sv);
  pgtls_conn c, b;
  int okc = pgtls_conn_init(&c, server_ctx, cs[0], NULL, 0) == 0;
  int okb = pgtls_conn_init(&b, upstream_ctx, bs[0], NULL, 0) == 0 && pgtls_upstream_setup(&b, "localhost") == 0;
  if (!okc || !okb || handshake(&c, cl) != 0 || handshake(&b, sv) != 0) goto out;
  /* what the addon does at spliceTls: the backend connection moves (a dup of its fd) */
  int nfd = dup(b.cfd);
  pgtls_conn peer;
  pgtls_conn_move(&peer, &b, nfd);
  size_t half = size / 2, pre = mode == 2 && half > 32 ? 32 : 0;
  if (pgtls_tls_splice_start(&c, &peer, data, pre, data + half, pre) != 0) {
    pgtls_conn_free(&peer);
    goto out;
  }
  SSL_write(cl, "Q", 1);
  SSL_write(sv, "Z", 1);
  if (half - pre && write(cs[1], data + pre, half - pre) < 0) {
  }
  if (size - half - pre && write(bs[1], data + half + pre, size - half - pre) < 0) {
  }
  for (int i = 0; i < 32; i++) {
    int want;
    c.c_readable = 1;
    c.b_readable = 1;
    if (pgtls_tls_splice_pump(&c, &peer, &want) == 1) break;
    if (i % 2) {
      pgtls_conn_trim(&c);
      pgtls_conn_trim(&peer);
    }
    drain(cl);
    drain(sv);
    if (i == 8) shutdown(mode == 2 ? bs[1] : cs[1], SHUT_WR);
    if (i == 16) shutdown(mode == 2 ? cs[1] : bs[1], SHUT_WR);
  }
  pgtls_conn_free(&peer);
out:
  pgtls_conn_free(&c);
  pgtls_conn_free(&b);
  SSL_free(cl);
  SSL_free(sv);
  close(cs[1]);
  close(bs[1]);
  ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 3;
  data++;
  size--;
  if (mode == 0) {
    pgtls_conn b;
    unsigned char out[PGTLS_IOBUF];
    int want;
    if (pgtls_conn_init(&b, upstream_ctx, -1, NULL, 0) == 0 && pgtls_upstream_setup(&b, "localhost") == 0) {
      pgtls_handshake_step(&b, &want); /* our ClientHello (sent nowhere: fd -1) */
      pgtls_feed(&b, data, size);
      if (pgtls_handshake_step(&b, &want) == 1) {
        (void)pgtls_upstream_cert_requested(b.ssl);
        pgtls_conn_trim(&b);
        for (int i = 0; i < 8 && pgtls_stream_read(&b, out, sizeof out, &want) > 0; i++) {
        }
      }
    }
    pgtls_conn_free(&b);
    ERR_clear_error();
    return 0;
  }
  fuzz_splice(data, size, mode);
  return 0;
}
