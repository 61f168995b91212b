/* util.h: small start-up helpers shared by the programs. */
#ifndef CALC_NET_UTIL_H
#define CALC_NET_UTIL_H
#include <stdbool.h>
#include <signal.h>

/* Parses a decimal integer in [lo, hi] strictly; exits 2 with "PROG: bad VALUE for --OPT". */
long util_parse_long(const char *prog, const char *opt, const char *s, long lo, long hi);
/* Raises RLIMIT_NOFILE to its hard limit (10,000 connections need more than 1024 fds). */
void util_raise_fd_limit(void);
/* SIGINT/SIGTERM set util_stop_requested; SIGPIPE is ignored (we use MSG_NOSIGNAL anyway). */
void util_install_signals(void);
extern volatile sig_atomic_t util_stop_requested;

#endif
