/* N-API for the server contexts (context.c): createContext(options) -> an SSL_CTX external. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "context.h"
#include "session.h"

/* ---- createContext(options) ---- */

/* A string property, "" when absent; NULL only when out of memory (shared with upstream-addon.c). */
char *pgtls_prop_string(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok ||
      t != napi_string)
    return strdup("");
  size_t len = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

void pgtls_free_ctx(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  SSL_CTX_free(data); /* sessions hold their own reference (SSL_new up-refs the context) */
}

napi_value pgtls_create_context(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pgtls_ctx_opts o;
  memset(&o, 0, sizeof o);
  char *chain = pgtls_prop_string(env, argv[0], "certChain"), *ca = pgtls_prop_string(env, argv[0], "caFile"),
       *crlf = pgtls_prop_string(env, argv[0], "crlFile"), *crld = pgtls_prop_string(env, argv[0], "crlDir"),
       *ciphers = pgtls_prop_string(env, argv[0], "ciphers"), *t13 = pgtls_prop_string(env, argv[0], "tls13Ciphers"),
       *groups = pgtls_prop_string(env, argv[0], "groups"), *dh = pgtls_prop_string(env, argv[0], "dhParams"),
       *minv = pgtls_prop_string(env, argv[0], "minVersion"), *maxv = pgtls_prop_string(env, argv[0], "maxVersion");
  napi_value keyv, prefv;
  void *key = NULL;
  size_t keylen = 0;
  bool isbuf = false, prefer = false;
  napi_get_named_property(env, argv[0], "key", &keyv);
  napi_is_buffer(env, keyv, &isbuf);
  if (isbuf) napi_get_buffer_info(env, keyv, &key, &keylen);
  napi_get_named_property(env, argv[0], "preferServerCiphers", &prefv);
  napi_get_value_bool(env, prefv, &prefer);
  o.cert_chain_pem = chain;
  o.key_pem = key;
  o.key_pem_len = keylen;
  o.ca_file = ca;
  o.crl_file = crlf;
  o.crl_dir = crld;
  o.ciphers = ciphers;
  o.tls13_ciphers = t13;
  o.groups = groups;
  o.dh_params_pem = dh;
  o.prefer_server_ciphers = prefer;
  o.min_version = pgtls_version_from_name(minv);
  o.max_version = pgtls_version_from_name(maxv);
  char err[512] = "";
  SSL_CTX *ctx = NULL;
  if (!chain || !ca || !crlf || !crld || !ciphers || !t13 || !groups || !dh || !minv || !maxv)
    snprintf(err, sizeof err, "out of memory");
  else if (!isbuf)
    snprintf(err, sizeof err, "key must be a Buffer");
  else if (o.min_version < 0 || o.max_version < 0)
    snprintf(err, sizeof err, "unknown protocol version");
  else
    ctx = pgtls_ctx_new(&o, err, sizeof err);
  free(chain), free(ca), free(crlf), free(crld), free(ciphers), free(t13), free(groups), free(dh), free(minv),
      free(maxv);
  return pgtls_ctx_external(env, ctx, err);
}


napi_value pgtls_ctx_external(napi_env env, SSL_CTX *ctx, const char *err) {
  if (!ctx) {
    napi_throw_error(env, "PGTLS_ERR_TLS_CONFIG", err);
    return NULL;
  }
  napi_value ext;
  if (napi_create_external(env, ctx, pgtls_free_ctx, NULL, &ext) != napi_ok) {
    SSL_CTX_free(ctx);
    napi_throw_error(env, "PGTLS_ERR_NATIVE", "napi_create_external failed");
    return NULL;
  }
  return ext;
}
