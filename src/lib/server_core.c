/* server_core.c: the server's answer to one message (see calc/server.h).
 * Order of checks follows the reference: type flag, then unpickling, then evaluation. */
#include "calc/server.h"

#include <stdio.h>
#include <string.h>

#include "calc/eval.h"
#include "calc/exc.h"
#include "calc/pickle.h"

static uint16_t response_cc(const calc_server_opts *o) { return o->no_cache ? 0 : o->cache_control; }

/* Packs a response around `payload`; if it cannot fit one message, answers a 400 instead. */
static int respond(const calc_server_opts *o, uint32_t now, uint16_t status, bool steps,
                   const calc_buf *payload, calc_buf *out, calc_answer_info *info) {
  info->status = status;
  info->steps = steps;
  return calc_message_build(out, now, false, status, !o->no_cache, steps, response_cc(o),
                            payload->data, payload->len);
}

/* A 400 with the exception: Python's own exceptions and the library's errors alike (their
 * status from calc_err_reference). */
static int respond_exc(const calc_server_opts *o, uint32_t now, const calc_exc *e, calc_buf *out,
                       calc_answer_info *info) {
  uint16_t status = e->err == CALC_OK ? 400 : (uint16_t)calc_err_reference(e->err).status;
  calc_buf p;
  calc_buf_init(&p, CALC_MAX_PAYLOAD);
  snprintf(info->error_type, sizeof info->error_type, "%s", e->type);
  calc_exc_str(e, info->error_msg, sizeof info->error_msg);
  int rc = calc_pickle_exception(e, &p);
  if (rc == 0) rc = respond(o, now, status, false, &p, out, info);
  calc_buf_free(&p);
  return rc;
}

/* Bytes that are no message (err: CALC_ERR_FRAMING or CALC_ERR_TRUNCATED): the reference's
 * api.CalculatorClientError('Error while unpacking request: ...'), a 500. */
static int respond_client_error(const calc_server_opts *o, uint32_t now, calc_err err, const char *msg,
                                calc_buf *out, calc_answer_info *info) {
  calc_err_answer a = calc_err_reference(err);
  calc_buf p;
  calc_buf_init(&p, CALC_MAX_PAYLOAD);
  snprintf(info->error_type, sizeof info->error_type, "%s", a.exc_class);
  snprintf(info->error_msg, sizeof info->error_msg, "%s", msg);
  int rc = calc_pickle_api_error(a.exc_class, msg, &p);
  if (rc == 0) rc = respond(o, now, (uint16_t)a.status, false, &p, out, info);
  calc_buf_free(&p);
  return rc;
}

int calc_server_answer_bad_length(const calc_server_opts *o, unsigned total_len, uint32_t now,
                                  calc_buf *out, calc_answer_info *info) {
  char msg[160];
  snprintf(msg, sizeof msg,
           "Error while unpacking request: Invalid total length: %u (must be between 12 and 65536 bytes inclusive)",
           total_len);
  return respond_client_error(o, now, CALC_ERR_FRAMING, msg, out, info);
}

int calc_server_answer_truncated(const calc_server_opts *o, size_t short_len, unsigned claimed,
                                 uint32_t now, calc_buf *out, calc_answer_info *info) {
  char msg[160];
  if (short_len < CALC_HEADER_SIZE)
    snprintf(msg, sizeof msg,
             "Error while unpacking request: The data is too short (%zu bytes) to be a valid header",
             short_len);
  else
    snprintf(msg, sizeof msg,
             "Error while unpacking request: The connection ended after %zu of the %u bytes the header announced",
             short_len, claimed);
  return respond_client_error(o, now, CALC_ERR_TRUNCATED, msg, out, info);
}

int calc_server_answer(const calc_server_opts *o, const calc_msg *m, uint32_t now, calc_buf *out,
                       calc_answer_info *info) {
  memset(info, 0, sizeof *info);
  calc_exc e;
  if (!m->h.is_request) {
    calc_exc_set(&e, "TypeError", "Received a response instead of a request");
    return respond_exc(o, now, &e, out, info);
  }
  calc_tree t = {0};
  if (calc_unpickle_request(m->payload, m->payload_len, &t, &e) < 0) {
    /* Refusing the same bytes again gives the same answer; running out of memory may not. */
    info->deterministic = e.err != CALC_ERR_NOMEM;
    return respond_exc(o, now, &e, out, info);
  }
  info->deterministic = t.rng == NULL;

  calc_num result;
  calc_num_init(&result);
  calc_strlist steps;
  calc_strlist_init(&steps);
  int rc;
  if (calc_eval(&t, &result, m->h.steps ? &steps : NULL, &e) < 0) {
    if (e.err == CALC_ERR_NOMEM) info->deterministic = false;
    rc = respond_exc(o, now, &e, out, info);
  } else {
    calc_buf p;
    calc_buf_init(&p, CALC_MAX_PAYLOAD);
    /* One allocation of about the payload's size (the steps' text, an opcode and a length per
     * step) instead of a doubling series; an estimate past the limit is left to the encoder. */
    size_t guess = steps.bytes + 16 * steps.n + 64;
    if (guess <= CALC_MAX_PAYLOAD) calc_buf_reserve(&p, guess);
    if (calc_pickle_result(&result, &steps, &p) == 0) {
      rc = respond(o, now, 200, steps.n > 0, &p, out, info);
    } else if (p.failed != CALC_ERR_LIMIT) {
      /* Memory ran out while encoding: say so, as the evaluation would have. */
      info->deterministic = false;
      calc_exc_nomem(&e, "");
      rc = respond_exc(o, now, &e, out, info);
    } else {
      /* The result does not fit one message (a huge int with its steps). */
      calc_exc_set_err(&e, CALC_ERR_LIMIT, "response too large for one message (over %u bytes): calclab limit",
                       CALC_MAX_MESSAGE);
      rc = respond_exc(o, now, &e, out, info);
    }
    calc_buf_free(&p);
  }
  calc_strlist_free(&steps);
  calc_num_clear(&result);
  calc_tree_free(&t);
  return rc;
}
