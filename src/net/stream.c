/* stream.c: framed non-blocking streams (see stream.h). */
#include "stream.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

void stream_init(stream *s) {
  s->w.fd = -1;
  calc_framer_init(&s->in, 0);
  calc_buf_init(&s->out, 0);
  s->out_off = 0;
  s->eof = false;
  s->idle = (idle_node){.owner = NULL};
}

void stream_free(stream *s) {
  idle_remove(&s->idle);
  calc_framer_free(&s->in);
  calc_buf_free(&s->out);
}

int stream_read(stream *s) {
  uint8_t buf[65536];
  int got = 0;
  for (;;) {
    ssize_t n = recv(s->w.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (calc_framer_feed(&s->in, buf, (size_t)n) < 0) {
        errno = ENOMEM;
        return -1;
      }
      got = 1;
      if ((size_t)n < sizeof buf) return got; /* drained: save a syscall */
      continue;
    }
    if (n == 0) {
      s->eof = true;
      return got;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return got;
    return -1;
  }
}

bool stream_pending_output(const stream *s) { return s->out.len > s->out_off; }

static int want_write(loop *l, stream *s, bool on) {
  uint32_t mask = on ? (s->w.mask | EPOLLOUT) : (s->w.mask & ~(uint32_t)EPOLLOUT);
  return loop_set(l, &s->w, mask);
}

int stream_send(loop *l, stream *s, const uint8_t *msg, size_t len) {
  size_t sent = 0;
  if (!stream_pending_output(s)) {
    for (;;) {
      ssize_t n = send(s->w.fd, msg, len, MSG_NOSIGNAL);
      if (n >= 0) {
        sent = (size_t)n;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return -1;
    }
    if (sent == len) return 0;
  }
  if (calc_buf_append(&s->out, msg + sent, len - sent) < 0) {
    errno = ENOMEM;
    return -1;
  }
  return want_write(l, s, true);
}

int stream_flush(loop *l, stream *s) {
  while (stream_pending_output(s)) {
    ssize_t n = send(s->w.fd, s->out.data + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    s->out_off += (size_t)n;
  }
  calc_buf_reset(&s->out);
  s->out_off = 0;
  return want_write(l, s, false);
}
