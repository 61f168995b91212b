/* proxy_core.c: the proxy's decisions (see calc/proxy.h). */
#include "calc/proxy.h"

#include <string.h>

#include "calc/pickle.h"
#include "calc/server.h"

int calc_proxy_on_request(calc_cache *cache, const calc_msg *m, uint32_t now, calc_buf *out,
                          calc_proxy_decision *d) {
  const uint8_t *stored;
  size_t stored_len;
  d->outcome = calc_cache_lookup(cache, &m->h, m->payload, m->payload_len, now, &stored, &stored_len,
                                 &d->times);
  if (d->outcome == CALC_CACHE_HIT) {
    d->action = CALC_PROXY_ANSWER;
    return calc_buf_append(out, stored, stored_len);
  }
  d->action = CALC_PROXY_FORWARD;
  return calc_message_build(out, now, true, 0, m->h.cache, m->h.steps, m->h.cache_control, m->payload,
                            m->payload_len);
}

/* A 400 whose payload is builtins.MemoryError: the server ran out of memory answering. */
static bool is_out_of_memory_answer(const uint8_t *resp, size_t resp_len) {
  calc_header h;
  if (calc_frame_parse(resp, resp_len, &h) != (ssize_t)resp_len || h.status != 400) return false;
  calc_pyobj *o = NULL;
  calc_exc e;
  bool nomem = false;
  if (calc_unpickle_response(resp + CALC_HEADER_SIZE, resp_len - CALC_HEADER_SIZE, &o, &e) == 0)
    nomem = o->kind == CALC_PY_EXC && strcmp(o->module, "builtins") == 0 && strcmp(o->name, "MemoryError") == 0;
  else
    nomem = e.err == CALC_ERR_NOMEM; /* the proxy itself is short of memory: store nothing */
  calc_pyobj_free(o);
  return nomem;
}

bool calc_proxy_on_response(calc_cache *cache, const calc_header *req, const uint8_t *payload, size_t len,
                            const uint8_t *resp, size_t resp_len, uint32_t now, calc_cache_times *t) {
  if (resp_len >= CALC_HEADER_SIZE && is_out_of_memory_answer(resp, resp_len)) {
    calc_cache_times_for(req, resp, now, t);
    return false;
  }
  return calc_cache_offer(cache, req, payload, len, resp, resp_len, now, t);
}

int calc_proxy_error(const char *inner_cls, const char *inner_msg, uint32_t now, calc_buf *out) {
  calc_buf p;
  calc_buf_init(&p, CALC_MAX_PAYLOAD);
  int rc = calc_pickle_proxy_error(inner_cls, inner_msg, &p);
  if (rc == 0) rc = calc_message_build(out, now, false, 500, false, false, 0, p.data, p.len);
  calc_buf_free(&p);
  return rc;
}
