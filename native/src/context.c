#include "context.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

/* ALPN as PostgreSQL 17+ offers it: "postgresql" only; a client that offers other protocols and not this one gets
 * the no_application_protocol alert (RFC 7301), a client that offers none is accepted (the caller decides). */
static const unsigned char alpn_protos[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  unsigned char *sel = NULL;
  int r = SSL_select_next_proto(&sel, outlen, alpn_protos, sizeof alpn_protos, in, inlen);
  if (r == OPENSSL_NPN_NEGOTIATED && sel) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Never prompt: the key handed to us is already decrypted (upstream.c's client contexts too). */
int pgtls_no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return 0;
}

static void fail(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, errlen, "%s: %s", what, r ? r : "unknown error");
  ERR_clear_error();
}

int pgtls_version_from_name(const char *name) {
  if (!name || !name[0]) return 0;
  if (!strcmp(name, "TLSv1")) return TLS1_VERSION;
  if (!strcmp(name, "TLSv1.1")) return TLS1_1_VERSION;
  if (!strcmp(name, "TLSv1.2")) return TLS1_2_VERSION;
  if (!strcmp(name, "TLSv1.3")) return TLS1_3_VERSION;
  return -1;
}

static int use_chain(SSL_CTX *ctx, const char *pem, char *err, size_t errlen) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b) return fail(err, errlen, "could not load server certificate"), -1;
  X509 *leaf = PEM_read_bio_X509(b, NULL, pgtls_no_password, NULL);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    X509_free(leaf);
    BIO_free(b);
    return fail(err, errlen, "could not load server certificate"), -1;
  }
  X509_free(leaf);
  for (int i = 0; i < 64; i++) {
    X509 *c = PEM_read_bio_X509(b, NULL, pgtls_no_password, NULL);
    if (!c) break;
    if (SSL_CTX_add0_chain_cert(ctx, c) != 1) {
      X509_free(c);
      BIO_free(b);
      return fail(err, errlen, "could not load server certificate chain"), -1;
    }
  }
  ERR_clear_error(); /* the PEM reader's "no start line" at the end of the chain */
  BIO_free(b);
  return 0;
}

SSL_CTX *pgtls_ctx_new(const pgtls_ctx_opts *o, char *err, size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return fail(err, errlen, "could not create SSL context"), NULL;
  if (use_chain(ctx, o->cert_chain_pem, err, errlen) != 0) goto bad;
  {
    BIO *b = BIO_new_mem_buf(o->key_pem, (int)o->key_pem_len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, pgtls_no_password, NULL) : NULL;
    BIO_free(b);
    if (!k || SSL_CTX_use_PrivateKey(ctx, k) != 1) {
      EVP_PKEY_free(k);
      fail(err, errlen, "could not load private key");
      goto bad;
    }
    EVP_PKEY_free(k);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail(err, errlen, "check of private key failed");
    goto bad;
  }
  if (o->min_version > 0 && !SSL_CTX_set_min_proto_version(ctx, o->min_version)) {
    fail(err, errlen, "could not set minimum SSL protocol version");
    goto bad;
  }
  if (!SSL_CTX_set_max_proto_version(ctx, o->max_version > 0 ? o->max_version : 0)) {
    fail(err, errlen, "could not set maximum SSL protocol version");
    goto bad;
  }
  /* As PostgreSQL: no tickets, no session cache, no compression, no renegotiation. SSL_OP_NO_TICKET alone only turns
   * TLS 1.3's tickets from stateless into stateful ones: without num_tickets 0 every handshake would still end in two
   * NewSessionTicket messages that no session cache can ever honour (and cost a record and a session each). */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (o->dh_params_pem && o->dh_params_pem[0]) {
    BIO *b = BIO_new_mem_buf(o->dh_params_pem, -1);
    EVP_PKEY *dh = b ? PEM_read_bio_Parameters(b, NULL) : NULL;
    BIO_free(b);
    if (!dh || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
      EVP_PKEY_free(dh);
      fail(err, errlen, "could not load DH parameters");
      goto bad;
    }
  } else {
    SSL_CTX_set_dh_auto(ctx, 1);
  }
  if (o->groups && o->groups[0] && SSL_CTX_set1_groups_list(ctx, o->groups) != 1) {
    fail(err, errlen, "could not set group names specified in ssl_groups");
    goto bad;
  }
  if (SSL_CTX_set_cipher_list(ctx, o->ciphers && o->ciphers[0] ? o->ciphers : "HIGH:MEDIUM:+3DES:!aNULL") != 1) {
    fail(err, errlen, "could not set the cipher list");
    goto bad;
  }
  if (o->tls13_ciphers && o->tls13_ciphers[0] && SSL_CTX_set_ciphersuites(ctx, o->tls13_ciphers) != 1) {
    fail(err, errlen, "could not set the TLSv1.3 cipher suites");
    goto bad;
  }
  if (o->prefer_server_ciphers) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
  if (o->ca_file && o->ca_file[0]) {
    STACK_OF(X509_NAME) *names = NULL;
    if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1 ||
        (names = SSL_load_client_CA_file(o->ca_file)) == NULL) {
      fail(err, errlen, "could not load root certificate file");
      goto bad;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    /* PostgreSQL: verify a certificate when the client sends one; whether one is required is hba's business.
     * A presented certificate that does not verify fails the handshake with OpenSSL's alert. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
  }
  if ((o->crl_file && o->crl_file[0]) || (o->crl_dir && o->crl_dir[0])) {
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    if (X509_STORE_load_locations(st, o->crl_file && o->crl_file[0] ? o->crl_file : NULL,
                                  o->crl_dir && o->crl_dir[0] ? o->crl_dir : NULL) != 1) {
      fail(err, errlen, "could not load SSL certificate revocation list");
      goto bad;
    }
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  ERR_clear_error();
  return ctx;
bad:
  SSL_CTX_free(ctx);
  return NULL;
}
