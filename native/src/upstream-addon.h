/* N-API side of TLS to the backend (upstream.h): the client context and the handshake's facts for negotiate.ts. */
#ifndef PGTLS_UPSTREAM_ADDON_H
#define PGTLS_UPSTREAM_ADDON_H
#include <node_api.h>
#include <openssl/ssl.h>

/* createClientContext(options) -> external SSL_CTX (upstream.h pgtls_client_ctx_new). */
napi_value pgtls_create_client_context(napi_env env, napi_callback_info info);
/* Add what libpq's checks need to a client session's facts object: the chain, the verify result, the standard
 * cipher name and whether a CertificateRequest came. */
void pgtls_upstream_facts(napi_env env, SSL *ssl, napi_value o);
#endif
