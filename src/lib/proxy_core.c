/* proxy_core.c: the proxy's decisions (see calc/proxy.h). */
#include "calc/proxy.h"

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

int calc_proxy_error(const char *inner_cls, const char *inner_msg, uint32_t now, calc_buf *out) {
  calc_buf p;
  calc_buf_init(&p, CALC_MAX_PAYLOAD);
  int rc = calc_pickle_proxy_error(inner_cls, inner_msg, &p);
  if (rc == 0) rc = calc_message_build(out, now, false, 500, false, false, 0, p.data, p.len);
  calc_buf_free(&p);
  return rc;
}
