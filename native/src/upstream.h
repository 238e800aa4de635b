/*
 * TLS on the gateway's hop to PostgreSQL (upstream_sslmode = require | verify-ca | verify-full), natively: the client
 * side of that handshake on the same pgtls_conn engine as the client-facing server side (engine.c: our buffer BIOs,
 * non-blocking, driven by the addon's uv_poll), and the TLS<->TLS relay between a client session and a backend
 * session with no JavaScript per message. No N-API in here, so the fuzz harness drives exactly this code;
 * upstream-addon.c reports the handshake's facts to JavaScript, where libpq's decisions are made (negotiate.ts).
 */
#ifndef PGTLS_UPSTREAM_H
#define PGTLS_UPSTREAM_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "engine.h"

/* A phase number of our own, far from engine.h's (0..4), so that new engine phases do not collide with it. */
#define PH_SPLICE_TLS 16

typedef struct pgtls_client_opts {
  const char *ca_pem;    /* root certificates (PEM, concatenated); "" = none loaded (nothing is verified) */
  const char *crl_pem;   /* CRLs (PEM, concatenated); "" = none; with crl_check, CRL checking is on regardless */
  int crl_check;         /* turn on X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL (Node does when CRLs are given) */
  const char *cert_pem;  /* client certificate, leaf first then its chain; "" = none */
  const unsigned char *key_pem; /* its decrypted key (PEM), in memory only */
  size_t key_pem_len;
  const char *ciphers;   /* TLS 1.2 and below: "DEFAULT" as libpq (OpenSSL's default list) */
  int min_version;       /* TLS1_VERSION.. */
  int max_version;       /* 0 = highest */
} pgtls_client_opts;

/*
 * A client SSL_CTX as negotiate.ts's Node options build it: no verification during the handshake (the chain is
 * verified by OpenSSL and its result read after, when libpq's rules are applied in JavaScript), ALPN "postgresql",
 * no session cache, and a certificate callback that records whether the server sent a CertificateRequest (libpq's
 * cert_cb, for sslcertmode). NULL on failure with err filled with OpenSSL's reason ("key values mismatch").
 */
SSL_CTX *pgtls_client_ctx_new(const pgtls_client_opts *o, char *err, size_t errlen);

/* Turn a pgtls_conn made by pgtls_conn_init() on a client context into the connecting side, with SNI when given. */
int pgtls_upstream_setup(pgtls_conn *c, const char *servername);

/* Whether the server asked for a client certificate during the handshake. */
int pgtls_upstream_cert_requested(const SSL *ssl);

/*
 * Move a connection's TLS state and buffers into dst, which watches newfd (a dup of src's socket): src keeps only
 * its fd, so freeing it closes that and nothing else. The BIOs point at the buffers, so they are re-pointed.
 */
void pgtls_conn_move(pgtls_conn *dst, pgtls_conn *src, int newfd);

/*
 * TLS<->TLS relay: c is the client's session (server side), b the backend's (client side, b->cfd its socket).
 * Prefixes are plaintext JavaScript already holds for each side. Readiness of the backend's socket comes in
 * c->b_readable (the addon's backend poll), as for the plain splice. Counters are c->from_client/from_backend.
 */
int pgtls_tls_splice_start(pgtls_conn *c, pgtls_conn *b, const unsigned char *to_backend, size_t tb_len,
                           const unsigned char *to_client, size_t tc_len);
/* Relay as far as the sockets allow. 1 when the relay is over, 0 to wait for *want (WANT_B* = the backend's fd). */
int pgtls_tls_splice_pump(pgtls_conn *c, pgtls_conn *b, int *want);

#endif
