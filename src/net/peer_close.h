/* peer_close.h: holding our close of a TCP connection until the other side has closed its own.
 *
 * calc-client (--close-wait) and the lab's preload (src/preload/close_wait.c, which compiles
 * peer_close.c into its shared object) both use it. */
#ifndef CALC_NET_PEER_CLOSE_H
#define CALC_NET_PEER_CLOSE_H

/* Gives the other side up to timeout_ms to close the connection (its FIN, or a reset) before
 * ours goes: a program that closes right after its answer then sends the first FIN however the
 * two are scheduled, while one that waits for its client's FIN, as the reference's server and
 * proxy do, still sees the client's first, only later. Nothing is read meanwhile (bytes left
 * unread still make our close a reset, as without the wait). errno is as it was on entry: the
 * preload calls it inside close() and shutdown(). */
void calc_wait_peer_close(int fd, int timeout_ms);

#endif
