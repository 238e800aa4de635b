/* Server SSL_CTX built as PostgreSQL's be_tls_init() builds it (be-secure-openssl.c). */
#ifndef PGTLS_CONTEXT_H
#define PGTLS_CONTEXT_H
#include <stddef.h>
#include <openssl/ssl.h>

typedef struct pgtls_ctx_opts {
  const char *cert_chain_pem; /* leaf first, then the chain, as ssl_cert_file holds them */
  const unsigned char *key_pem; /* decrypted PKCS#8 PEM, in memory only */
  size_t key_pem_len;
  const char *ca_file;   /* "" = no client certificates requested */
  const char *crl_file;  /* "" = none */
  const char *crl_dir;   /* "" = none; a c_rehash directory, looked up per verification as PostgreSQL does */
  const char *ciphers;   /* ssl_ciphers (TLS 1.2 and below) */
  const char *tls13_ciphers; /* "" = OpenSSL's default */
  const char *groups;    /* "" = OpenSSL's default */
  const char *dh_params_pem; /* "" = automatic */
  int prefer_server_ciphers;
  int min_version; /* TLS1_VERSION.. */
  int max_version; /* 0 = highest */
} pgtls_ctx_opts;

/* NULL on failure with err filled ("could not load ...: reason"). */
SSL_CTX *pgtls_ctx_new(const pgtls_ctx_opts *o, char *err, size_t errlen);
int pgtls_version_from_name(const char *name); /* "TLSv1.2" -> TLS1_2_VERSION, "" -> 0, unknown -> -1 */
/* The pem_password_cb that never prompts (keys arrive decrypted). */
int pgtls_no_password(char *buf, int size, int rwflag, void *u);

#endif
