/* N-API glue for upstream.c; everything here runs on Node's main thread, as addon.c. */
#include "upstream-addon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "context.h"
#include "session.h"
#include "upstream.h"

napi_value pgtls_create_client_context(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "createClientContext(options)");
    return NULL;
  }
  char *ca = pgtls_prop_string(env, argv[0], "ca"), *crl = pgtls_prop_string(env, argv[0], "crl"), *cert = pgtls_prop_string(env, argv[0], "cert"),
       *ciphers = pgtls_prop_string(env, argv[0], "ciphers"), *minv = pgtls_prop_string(env, argv[0], "minVersion"),
       *maxv = pgtls_prop_string(env, argv[0], "maxVersion");
  napi_value keyv, crlv;
  void *key = NULL;
  size_t keylen = 0;
  bool isbuf = false, crl_check = false;
  if (napi_get_named_property(env, argv[0], "key", &keyv) == napi_ok && napi_is_buffer(env, keyv, &isbuf) == napi_ok &&
      isbuf)
    napi_get_buffer_info(env, keyv, &key, &keylen);
  if (napi_get_named_property(env, argv[0], "crlCheck", &crlv) == napi_ok) napi_get_value_bool(env, crlv, &crl_check);
  pgtls_client_opts o;
  memset(&o, 0, sizeof o);
  o.ca_pem = ca;
  o.crl_pem = crl;
  o.crl_check = crl_check;
  o.cert_pem = cert;
  o.key_pem = key;
  o.key_pem_len = keylen;
  o.ciphers = ciphers;
  o.min_version = pgtls_version_from_name(minv);
  o.max_version = pgtls_version_from_name(maxv);
  char err[512] = "";
  SSL_CTX *ctx = NULL;
  if (!ca || !crl || !cert || !ciphers || !minv || !maxv)
    snprintf(err, sizeof err, "out of memory");
  else if (cert[0] && !isbuf)
    snprintf(err, sizeof err, "key must be a Buffer");
  else if (o.min_version < 0 || o.max_version < 0)
    snprintf(err, sizeof err, "unknown protocol version");
  else
    ctx = pgtls_client_ctx_new(&o, err, sizeof err);
  free(ca), free(crl), free(cert), free(ciphers), free(minv), free(maxv);
  return pgtls_ctx_external(env, ctx, err);
}

static napi_value der(napi_env env, X509 *x) {
  napi_value buf;
  int n = i2d_X509(x, NULL);
  void *data;
  if (n <= 0 || napi_create_buffer(env, (size_t)n, &data, &buf) != napi_ok) {
    napi_get_undefined(env, &buf);
    return buf;
  }
  unsigned char *p = data;
  i2d_X509(x, &p);
  return buf;
}

void pgtls_upstream_facts(napi_env env, SSL *ssl, napi_value o) {
  napi_value v;
  const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
  const char *std = ci ? SSL_CIPHER_standard_name(ci) : NULL;
  if (std) {
    napi_create_string_utf8(env, std, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, o, "standardName", v);
  }
  long vr = SSL_get_verify_result(ssl);
  napi_create_int64(env, vr, &v);
  napi_set_named_property(env, o, "verifyResult", v);
  if (vr != X509_V_OK) {
    napi_create_string_utf8(env, X509_verify_cert_error_string(vr), NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, o, "verifyError", v);
  }
  /* The chain as OpenSSL verified it (with the trust anchor from the root file, as Node's getPeerCertificate(true)
   * shows it), else as the server sent it (leaf first on the client side). */
  STACK_OF(X509) *chain = vr == X509_V_OK ? SSL_get0_verified_chain(ssl) : NULL;
  if (!chain) chain = SSL_get_peer_cert_chain(ssl);
  napi_value arr;
  napi_create_array(env, &arr);
  int n = chain ? sk_X509_num(chain) : 0;
  for (int i = 0, k = 0; i < n && i < 16; i++) {
    napi_value b = der(env, sk_X509_value(chain, i));
    napi_valuetype t;
    if (napi_typeof(env, b, &t) == napi_ok && t == napi_object) napi_set_element(env, arr, (uint32_t)k++, b);
  }
  napi_set_named_property(env, o, "peerChain", arr);
  napi_get_boolean(env, pgtls_upstream_cert_requested(ssl) != 0, &v);
  napi_set_named_property(env, o, "certificateRequested", v);
}
