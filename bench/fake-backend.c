/*
 * A fast fake PostgreSQL backend for bench/workers.ts: just enough of protocol v3 that the gateway, not the backend,
 * is what limits `pgbench -S`-like load. One thread, epoll, non-blocking sockets, no TLS (the gateway's hop to it is
 * plaintext on loopback: upstream_sslmode = disable).
 *
 *   SSLRequest / GSSENCRequest      -> 'N'
 *   StartupMessage                  -> AuthenticationOk, ParameterStatus ×8, BackendKeyData, ReadyForQuery('I')
 *   CancelRequest                   -> closed (nothing runs long enough to cancel)
 *   Query 'Q'                       -> RowDescription(one int4 column), DataRow('1'), CommandComplete('SELECT 1'), RFQ
 *   Parse '1' / Bind '2' / Close '3'-> ParseComplete / BindComplete / CloseComplete
 *   Describe 'D'                    -> ParameterDescription(0) + RowDescription for a statement, RowDescription for a portal
 *   Execute 'E'                     -> DataRow('1'), CommandComplete('SELECT 1')
 *   Sync 'S'                        -> ReadyForQuery('I');  Flush 'H' -> nothing;  Terminate 'X' -> closed
 * Whatever the SQL, the answer is the same one-row result: pgbench's scripts only count transactions.
 *
 *   cc -O2 -o fake-backend bench/fake-backend.c && ./fake-backend PORT
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_CAP (64 * 1024)
#define OUT_CAP (256 * 1024)
#define MAX_FDS 65536

typedef struct {
  int fd;
  int started; /* StartupMessage seen */
  size_t in_len;
  size_t out_len, out_off;
  uint8_t in[IN_CAP];
  uint8_t out[OUT_CAP];
} conn_t;

static conn_t *conns[MAX_FDS];
static int epfd;
static uint32_t next_pid = 1000;

static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}
static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Append one message: type byte, Int32 length, body. Returns 0 when the output buffer is full (the peer is not
 * reading: the connection is dropped). */
static int msg(conn_t *c, char type, const void *body, uint32_t len) {
  if (c->out_len + 5 + len > OUT_CAP) return 0;
  uint8_t *p = c->out + c->out_len;
  p[0] = (uint8_t)type;
  put32(p + 1, len + 4);
  if (len) memcpy(p + 5, body, len);
  c->out_len += 5 + len;
  return 1;
}

static int param(conn_t *c, const char *k, const char *v) {
  uint8_t b[128];
  size_t kl = strlen(k) + 1, vl = strlen(v) + 1;
  memcpy(b, k, kl);
  memcpy(b + kl, v, vl);
  return msg(c, 'S', b, (uint32_t)(kl + vl));
}

/* RowDescription: one column "c", int4 (oid 23), text format. */
static const uint8_t ROWDESC[] = {0, 1, 'c', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0};
/* DataRow: one column, 1 byte, "1". */
static const uint8_t DATAROW[] = {0, 1, 0, 0, 0, 1, '1'};
static const char TAG[] = "SELECT 1";

static int ready(conn_t *c) { return msg(c, 'Z', "I", 1); }

static int greet(conn_t *c) {
  uint8_t key[8];
  put32(key, next_pid++);
  put32(key + 4, 0x5eed);
  uint8_t ok[4] = {0, 0, 0, 0};
  return msg(c, 'R', ok, 4) && param(c, "server_version", "18.0") && param(c, "server_encoding", "UTF8") &&
         param(c, "client_encoding", "UTF8") && param(c, "DateStyle", "ISO, MDY") &&
         param(c, "integer_datetimes", "on") && param(c, "standard_conforming_strings", "on") &&
         param(c, "TimeZone", "UTC") && param(c, "application_name", "") && msg(c, 'K', key, 8) && ready(c);
}

static void drop(conn_t *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c);
}

/* Write what is queued; 0 on a fatal error. Waits for EPOLLOUT when the socket is full. */
static int flush_out(conn_t *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
      epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
      return 1;
    }
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
  c->out_len = c->out_off = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  return 1;
}

/* Handle every complete message in the input buffer; 0 to close the connection. */
static int handle(conn_t *c) {
  size_t off = 0;
  for (;;) {
    size_t avail = c->in_len - off;
    const uint8_t *p = c->in + off;
    if (!c->started) {
      if (avail < 8) break;
      uint32_t len = get32(p), code = get32(p + 4);
      if (len < 8 || len > IN_CAP) return 0;
      if (avail < len) break;
      off += len;
      if (code == 80877103 || code == 80877104) { /* SSLRequest, GSSENCRequest: no */
        if (c->out_len + 1 > OUT_CAP) return 0;
        c->out[c->out_len++] = 'N';
      } else if (code == 80877102) { /* CancelRequest */
        return 0;
      } else { /* StartupMessage (3.0 or 3.2) */
        c->started = 1;
        if (!greet(c)) return 0;
      }
      continue;
    }
    if (avail < 5) break;
    uint32_t len = get32(p + 1);
    if (len < 4 || len + 1 > IN_CAP) return 0;
    if (avail < len + 1) break;
    char type = (char)p[0];
    off += len + 1;
    int ok = 1;
    switch (type) {
      case 'Q':
        ok = msg(c, 'T', ROWDESC, sizeof ROWDESC) && msg(c, 'D', DATAROW, sizeof DATAROW) &&
             msg(c, 'C', TAG, sizeof TAG) && ready(c);
        break;
      case 'P': /* Parse */
        ok = msg(c, '1', NULL, 0);
        break;
      case 'B': /* Bind */
        ok = msg(c, '2', NULL, 0);
        break;
      case 'C': /* Close */
        ok = msg(c, '3', NULL, 0);
        break;
      case 'D': { /* Describe: 'S' statement or 'P' portal */
        uint8_t none[2] = {0, 0};
        if (len >= 5 && p[5] == 'S') ok = msg(c, 't', none, 2);
        ok = ok && msg(c, 'T', ROWDESC, sizeof ROWDESC);
        break;
      }
      case 'E':
        ok = msg(c, 'D', DATAROW, sizeof DATAROW) && msg(c, 'C', TAG, sizeof TAG);
        break;
      case 'S':
        ok = ready(c);
        break;
      case 'H':
        break;
      case 'X':
        return 0;
      default: { /* anything else: an ErrorResponse, as a server would for what it does not support */
        static const char err[] = "SERROR\0C0A000\0Mnot supported by the fake backend\0";
        ok = msg(c, 'E', err, sizeof err) && ready(c);
      }
    }
    if (!ok) return 0;
  }
  if (off > 0) {
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) {
    perror("listen");
    return 1;
  }
  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(epfd, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (cfd < 0) break;
          if (cfd >= MAX_FDS) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_t *c = calloc(1, sizeof *c);
          if (!c) {
            close(cfd);
            continue;
          }
          c->fd = cfd;
          conns[cfd] = c;
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      conn_t *c = conns[fd];
      if (!c) continue;
      if (evs[i].events & EPOLLOUT) {
        if (!flush_out(c)) {
          drop(c);
          continue;
        }
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int dead = 0;
        for (;;) {
          if (c->in_len == IN_CAP) { /* a message larger than the buffer: not something pgbench sends */
            dead = 1;
            break;
          }
          ssize_t r = read(fd, c->in + c->in_len, IN_CAP - c->in_len);
          if (r > 0) {
            c->in_len += (size_t)r;
            if (!handle(c)) {
              dead = 1;
              break;
            }
            continue;
          }
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (r < 0 && errno == EINTR) continue;
          dead = 1; /* EOF or error */
          break;
        }
        if (dead || !flush_out(c)) drop(c);
      }
    }
  }
}
