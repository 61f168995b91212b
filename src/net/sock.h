/* sock.h: small socket helpers shared by the programs (blocking only at start-up). */
#ifndef CALC_NET_SOCK_H
#define CALC_NET_SOCK_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct sock_addr {
  struct sockaddr_storage ss;
  socklen_t len;
} sock_addr;

/* Resolves host:port (numeric or name) to the first address. 0, or -1 with msg filled. */
int sock_resolve(const char *host, int port, sock_addr *out, char *msg, size_t msgsize);
/* A non-blocking listening socket (SO_REUSEADDR, and SO_REUSEPORT when reuseport). -1 + errno. */
int sock_listen(const sock_addr *a, bool reuseport, int backlog);
/* Starts a non-blocking connect. Returns the fd (connection may still be in progress) or -1. */
int sock_connect_nonblock(const sock_addr *a);
int sock_set_nonblock(int fd);
/* Accepts one pending connection (non-blocking, close-on-exec), retrying interrupted and
 * aborted ones, and formats its peer. Returns the fd, or -1 with errno (EAGAIN: none left). */
int sock_accept(int listen_fd, char *peer, size_t peersize);
/* One recv / send on a non-blocking socket, retrying interruptions. recv: bytes read, 0 at the
 * peer's FIN, -1 with errno (EAGAIN: nothing now). send: bytes taken (0 when the socket is
 * full), -1 with errno on an error. */
ssize_t sock_recv(int fd, void *buf, size_t len);
ssize_t sock_send(int fd, const void *buf, size_t len);
/* "127.0.0.1:64031" or "[::1]:64031". */
void sock_format(const struct sockaddr *sa, char *buf, size_t size);
/* Parses a port number 0..65535 strictly; -1 on bad text. */
int sock_parse_port(const char *s);

#endif
