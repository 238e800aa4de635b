/*
 * The pgtls native data plane: one server TLS connection driven over non-blocking sockets, with OpenSSL reading and
 * writing memory BIOs and this code moving bytes between those BIOs and the file descriptors. No N-API or libuv in
 * here, so the fuzz harness drives exactly this code; addon.c adds the event loop and the JavaScript callbacks.
 *
 * Why our own buffer BIOs rather than SSL_set_fd: the first bytes of a direct-TLS ClientHello were already read by
 * JavaScript and must be fed first, SSL_write into a memory BIO never returns SSL_ERROR_WANT_WRITE (so a write is
 * never half-done inside OpenSSL), and every socket read/write is ours to bound and account.
 */
#ifndef PGTLS_ENGINE_H
#define PGTLS_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

/* Plaintext chunk per direction; one TLS record's worth. */
#define PGTLS_IOBUF 16384
/* Ciphertext allowed to wait in either memory BIO before we stop producing more (backpressure). */
#define PGTLS_CIPHER_CAP 65536

enum pgtls_phase { PH_HANDSHAKE = 0, PH_STREAM = 1, PH_SPLICE = 2, PH_DONE = 3, PH_TX = 4, PH_NEGOTIATE = 5 };

/* What one pump asks of the event loop: which fds to watch and whether to run again soon without waiting. */
#define WANT_CR 1 /* client readable */
#define WANT_CW 2 /* client writable */
#define WANT_BR 4 /* backend readable */
#define WANT_BW 8 /* backend writable */

/* A byte buffer with a read cursor: bytes [off, len) are pending. */
typedef struct pgtls_buf {
  unsigned char *p;
  size_t off, len, cap;
} pgtls_buf;

struct pgtls_tx; /* txrelay.h */

typedef struct pgtls_conn {
  SSL *ssl;
  BIO *rbio; /* reads from `in`: ciphertext from the client, filled by read(cfd) */
  BIO *wbio; /* appends to `out`: ciphertext for the client, drained by send(cfd) */
  pgtls_buf in, out;
  int cfd;   /* our dup of the client socket, or -1 (fuzzing) */
  int bfd;   /* our dup of the backend socket in PH_SPLICE, else -1 */
  int phase;
  /* readiness hints from the event loop: try the read syscall only when the fd was reported readable */
  int c_readable, b_readable;
  int c_rd_eof;    /* read(cfd) returned 0 or failed */
  int c_tls_eof;   /* no more plaintext will come from the client (close_notify, EOF or TLS error) */
  int c_wr_err;    /* write(cfd) failed: the client is gone */
  int b_rd_eof;    /* read(bfd) returned 0 or failed */
  int b_wr_shut;   /* shutdown(bfd, SHUT_WR) done after the client finished */
  int b_err;       /* a backend syscall failed */
  int closing;     /* stream phase: JavaScript ended its side; close once the ciphertext is out */
  int reading;     /* stream phase: JavaScript wants decrypted bytes */
  int tls_fatal;   /* OpenSSL reported a fatal error: no further SSL_* calls except freeing */
  /* client -> backend plaintext waiting for write(bfd) */
  unsigned char *up; /* allocated when needed, given back by pgtls_conn_trim() while empty */
  size_t up_cap, up_off, up_len;
  uint64_t from_client, from_backend;
  struct pgtls_tx *tx; /* the transaction relay's state (txrelay.c), allocated on first use */
  char reason[256]; /* OpenSSL's reason text of the first failure, as PostgreSQL logs it */
} pgtls_conn;

/* Create a connection on ctx for client fd (owned from now on; -1 allowed). 0 on success. */
int pgtls_conn_init(pgtls_conn *c, SSL_CTX *ctx, int cfd, const unsigned char *initial, size_t initial_len);
/* Free OpenSSL state and close owned fds. Safe to call twice. */
void pgtls_conn_free(pgtls_conn *c);

/* Feed ciphertext as if read from the client (initial bytes; the fuzzer). */
int pgtls_feed(pgtls_conn *c, const unsigned char *p, size_t n);

/*
 * Before TLS (a connection started in PH_NEGOTIATE): the client's first bytes, read here so that the commonest
 * opening — an SSLRequest alone — costs no JavaScript. 1: it was exactly that; 'S' is queued and the connection is in
 * PH_HANDSHAKE. 2: anything else — another packet, bytes behind the SSLRequest (CVE-2021-23214), a ClientHello, EOF or
 * an error — is JavaScript's: the bytes read are in c->in, the socket untouched beyond them. 0: wait (*want).
 */
int pgtls_negotiate_step(pgtls_conn *c, int *want);

/* Handshake progress: 1 done, 0 needs I/O (see *want), -1 failed (c->reason). */
int pgtls_handshake_step(pgtls_conn *c, int *want);

/*
 * Stream phase: decrypt at most one chunk into out (cap bytes). Returns >0 bytes, 0 when it needs I/O (*want),
 * -1 at end of the client's data (c->c_tls_eof; c->reason says why if it was an error).
 */
long pgtls_stream_read(pgtls_conn *c, unsigned char *out, size_t cap, int *want);
/* Encrypt JavaScript's bytes; returns 1 while the ciphertext backlog is under PGTLS_CIPHER_CAP, 0 above, -1 error. */
int pgtls_stream_write(pgtls_conn *c, const unsigned char *p, size_t n);
/* Queue close_notify. */
void pgtls_stream_end(pgtls_conn *c);

/* Start relaying to backend fd (owned from now on); prefixes are bytes JavaScript already holds for each side. */
int pgtls_splice_start(pgtls_conn *c, int bfd, const unsigned char *to_backend, size_t tb_len,
                       const unsigned char *to_client, size_t tc_len);
/* Relay as far as the sockets allow. Returns 1 when the relay is over, 0 to wait for *want. */
int pgtls_splice_pump(pgtls_conn *c, int *want);

/*
 * Give back the memory an idle connection does not need: our empty buffers, and OpenSSL's record buffers when it
 * holds no partial record (SSL_free_buffers). The next read or write allocates them again. Called for connections
 * that saw no traffic for a while, so the relay's hot path never pays for it; an idle TLS session then costs the SSL
 * object and little else.
 */
void pgtls_conn_trim(pgtls_conn *c);

/* Write pending ciphertext to the client. 0 all written, 1 some left (EAGAIN), -1 client gone. */
int pgtls_flush(pgtls_conn *c);
size_t pgtls_out_pending(pgtls_conn *c);

/* One read(cfd) into the incoming ciphertext buffer: 1 got bytes, 0 would block (or the buffer is full), -1 EOF. */
int pgtls_read_client(pgtls_conn *c);
/* SSL_read for the relays: the count, or 0 with c_tls_eof/tls_fatal or the ciphertext read (engine.c). */
int pgtls_read_plain(pgtls_conn *c, unsigned char *out, size_t cap, int *progress);
void pgtls_set_reason_errno(pgtls_conn *c, int err);

/* The first error in OpenSSL's queue as PostgreSQL's SSLerrmessage() prints it; clears the queue. */
void pgtls_set_reason_from_queue(pgtls_conn *c, const char *fallback);

#endif
