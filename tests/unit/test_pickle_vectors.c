/* test_pickle_vectors.c: the payload codec against the reference's own vectors
 * ($CALC_VECTORS/legacy-expressions.jsonl and legacy-protocol.jsonl).
 *
 * For every vector (quirk ones counted apart):
 *   request.payload -> calc_unpickle_request -> calc_pickle_request == the same bytes;
 *   calc_parse(input) -> calc_pickle_request == request.payload;
 *   decoded request -> calc_eval (steps on / off) -> calc_pickle_result or
 *     calc_pickle_exception == the steps / nosteps payload;
 *   every response payload -> calc_unpickle_response -> str() as the client prints it.
 * Protocol vectors: the decoder's 400s, the server's and the proxy's 500s byte for byte.
 * Failures quote the vector's name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/parse.h"
#include "calc/pickle.h"

/* The evaluator lands in src/lib/eval.c; its checks run once that file exists. */
#if defined(__has_include)
#if __has_include("../../src/lib/eval.c")
#define HAVE_EVAL 1
#endif
#endif

/* ---- a tiny JSON field extraction: one object per line, payloads are hex strings ---- */

static char *read_file(const char *name, size_t *len) {
  const char *dir = getenv("CALC_VECTORS");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : "../shared/vectors", name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *d = malloc((size_t)n + 1);
  if (d && fread(d, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (d) d[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return d;
}

/* Finds "key": after `from` within [from, end); returns a pointer past the colon and spaces. */
static const char *jfind(const char *from, const char *end, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  size_t pl = strlen(pat);
  for (const char *p = from; p + pl <= end; p++)
    if (memcmp(p, pat, pl) == 0) return p + pl;
  return NULL;
}

/* A JSON string value at p (pointing at the quote), unescaped into a malloc'd buffer. */
static char *jstr(const char *p, size_t *outlen) {
  if (!p || *p != '"') return NULL;
  p++;
  char *d = malloc(strlen(p) + 1), *o = d;
  while (*p && *p != '"') {
    if (*p == '\\') {
      p++;
      char c = *p++;
      if (c == 'n') *o++ = '\n';
      else if (c == 't') *o++ = '\t';
      else if (c == 'r') *o++ = '\r';
      else if (c == 'u') {
        unsigned cp = 0;
        sscanf(p, "%4x", &cp);
        p += 4;
        if (cp < 0x80) *o++ = (char)cp;
        else if (cp < 0x800) { *o++ = (char)(0xc0 | (cp >> 6)); *o++ = (char)(0x80 | (cp & 0x3f)); }
        else { *o++ = (char)(0xe0 | (cp >> 12)); *o++ = (char)(0x80 | ((cp >> 6) & 0x3f)); *o++ = (char)(0x80 | (cp & 0x3f)); }
      } else *o++ = c;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
  if (outlen) *outlen = (size_t)(o - d);
  return d;
}

static uint8_t *unhex(const char *h, size_t *n) {
  size_t l = strlen(h) / 2;
  uint8_t *d = malloc(l ? l : 1);
  for (size_t i = 0; i < l; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    d[i] = (uint8_t)v;
  }
  *n = l;
  return d;
}

typedef struct {
  char *name, *input;
  int quirk;
  uint8_t *req, *steps, *nosteps;
  size_t req_n, steps_n, nosteps_n;
  int steps_status, nosteps_status;
  char *steps_prints, *nosteps_prints;
} vec;

static uint8_t *sub_payload(const char *line, const char *end, const char *obj, size_t *n, int *status,
                            char **prints) {
  const char *o = jfind(line, end, obj);
  if (!o) return NULL;
  const char *pl = jfind(o, end, "payload");
  if (status) {
    const char *s = jfind(o, end, "status");
    *status = s ? atoi(s) : 0;
  }
  if (prints) *prints = jstr(jfind(o, end, "client_prints"), NULL);
  char *hex = jstr(pl, NULL);
  uint8_t *d = hex ? unhex(hex, n) : NULL;
  free(hex);
  return d;
}

static vec *load_expr_vectors(size_t *count) {
  size_t len;
  char *txt = read_file("legacy-expressions.jsonl", &len);
  if (!txt) return NULL;
  size_t cap = 512, n = 0;
  vec *v = calloc(cap, sizeof *v);
  for (char *line = txt; *line;) {
    char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    if (end > line) {
      vec *x = &v[n++];
      x->name = jstr(jfind(line, end, "name"), NULL);
      x->input = jstr(jfind(line, end, "input"), NULL);
      const char *q = jfind(line, end, "quirk");
      x->quirk = q && strncmp(q, "true", 4) == 0;
      x->req = sub_payload(line, end, "request", &x->req_n, NULL, NULL);
      x->steps = sub_payload(line, end, "steps", &x->steps_n, &x->steps_status, &x->steps_prints);
      x->nosteps = sub_payload(line, end, "nosteps", &x->nosteps_n, &x->nosteps_status, &x->nosteps_prints);
    }
    line = *end ? end + 1 : end;
    if (n == cap) break;
  }
  free(txt);
  *count = n;
  return v;
}

static void free_vectors(vec *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].name); free(v[i].input); free(v[i].req); free(v[i].steps); free(v[i].nosteps);
    free(v[i].steps_prints); free(v[i].nosteps_prints);
  }
  free(v);
}

static int same(const calc_buf *b, const uint8_t *p, size_t n) {
  return !b->failed && b->len == n && memcmp(b->data, p, n) == 0;
}

static void dump_diff(const char *what, const char *name, const calc_buf *b, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < b->len && i < n && b->data[i] == p[i]) i++;
  fprintf(stderr, "  %s %s: got %zu bytes, want %zu, first difference at %zu\n", what, name, b->len, n, i);
}

static vec *V;
static size_t NV;

static int setup(void **state) {
  (void)state;
  V = load_expr_vectors(&NV);
  return V ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  free_vectors(V, NV);
  return 0;
}

static void test_request_roundtrip(void **state) {
  (void)state;
  size_t ok = 0, qok = 0, bad = 0, nq = 0;
  for (size_t i = 0; i < NV; i++) {
    calc_tree t;
    calc_exc e;
    calc_buf b;
    calc_buf_init(&b, 0);
    int r = calc_unpickle_request(V[i].req, V[i].req_n, &t, &e);
    if (r == 0) calc_pickle_request(&t, &b);
    int good = r == 0 && same(&b, V[i].req, V[i].req_n);
    if (V[i].quirk) {
      nq++;
      qok += good;
    } else if (good) {
      ok++;
    } else {
      bad++;
      if (r) fprintf(stderr, "  decode %s: %s: %s\n", V[i].name, e.type, e.msg);
      else dump_diff("roundtrip", V[i].name, &b, V[i].req, V[i].req_n);
    }
    calc_tree_free(&t);
    calc_buf_free(&b);
  }
  printf("request roundtrip: %zu/%zu non-quirk byte-exact, %zu/%zu quirk\n", ok, ok + bad, qok, nq);
  assert_int_equal(bad, 0);
  assert_true(ok > 300);
}

static void test_parse_encode(void **state) {
  (void)state;
  size_t ok = 0, bad = 0;
  for (size_t i = 0; i < NV; i++) {
    if (V[i].quirk) continue;
    calc_tree t = {0};
    calc_parse_error pe;
    calc_buf b;
    calc_buf_init(&b, 0);
    int r = calc_parse(V[i].input, strlen(V[i].input), &t, &pe);
    if (r == 0) calc_pickle_request(&t, &b);
    if (r == 0 && same(&b, V[i].req, V[i].req_n)) {
      ok++;
    } else {
      bad++;
      if (r) fprintf(stderr, "  parse %s: %s\n", V[i].name, pe.msg);
      else dump_diff("parse+encode", V[i].name, &b, V[i].req, V[i].req_n);
    }
    calc_tree_free(&t);
    calc_buf_free(&b);
  }
  printf("parse -> request: %zu/%zu non-quirk byte-exact\n", ok, ok + bad);
  assert_int_equal(bad, 0);
}

#ifdef HAVE_EVAL
/* One evaluation: the payload the reference's server answers. */
static int eval_payload(const calc_tree *t, int steps, calc_buf *out, int *status) {
  calc_num res;
  calc_num_init(&res);
  calc_strlist sl;
  calc_strlist_init(&sl);
  calc_exc e;
  int r = calc_eval(t, &res, steps ? &sl : NULL, &e);
  if (r == 0) {
    *status = 200;
    r = calc_pickle_result(&res, &sl, out);
  } else {
    *status = 400;
    r = calc_pickle_exception(&e, out);
  }
  calc_num_clear(&res);
  calc_strlist_free(&sl);
  return r;
}

static void test_eval_encode(void **state) {
  (void)state;
  size_t ok = 0, bad = 0;
  for (size_t i = 0; i < NV; i++) {
    if (V[i].quirk) continue;
    calc_tree t;
    calc_exc e;
    if (calc_unpickle_request(V[i].req, V[i].req_n, &t, &e) < 0) {
      bad += 2;
      continue;
    }
    for (int s = 1; s >= 0; s--) {
      calc_buf b;
      calc_buf_init(&b, 0);
      int status = 0;
      eval_payload(&t, s, &b, &status);
      const uint8_t *want = s ? V[i].steps : V[i].nosteps;
      size_t wn = s ? V[i].steps_n : V[i].nosteps_n;
      int wst = s ? V[i].steps_status : V[i].nosteps_status;
      if (status == wst && same(&b, want, wn)) {
        ok++;
      } else {
        bad++;
        dump_diff(s ? "eval steps" : "eval nosteps", V[i].name, &b, want, wn);
      }
      calc_buf_free(&b);
    }
    calc_tree_free(&t);
  }
  printf("eval -> response: %zu/%zu non-quirk payloads byte-exact\n", ok, ok + bad);
  assert_int_equal(bad, 0);
}
#endif

/* The client's view: str(result) / str(exception) as client_prints shows it. */
static void test_response_decode(void **state) {
  (void)state;
  size_t ok = 0, bad = 0;
  for (size_t i = 0; i < NV; i++) {
    for (int s = 0; s < 2; s++) {
      const uint8_t *p = s ? V[i].steps : V[i].nosteps;
      size_t n = s ? V[i].steps_n : V[i].nosteps_n;
      int st = s ? V[i].steps_status : V[i].nosteps_status;
      const char *prints = s ? V[i].steps_prints : V[i].nosteps_prints;
      calc_pyobj *o = NULL;
      calc_exc e;
      calc_buf b;
      calc_buf_init(&b, 0);
      int r = calc_unpickle_response(p, n, &o, &e);
      if (r == 0 && st == 200 && o->kind == CALC_PY_TUPLE && o->n == 2) {
        calc_buf_puts(&b, "Result: ");
        calc_pyobj_str(o->items[0], &b);
        calc_buf_putc(&b, '\n');
      } else if (r == 0 && st == 400) {
        calc_buf_puts(&b, "Got error: ");
        calc_pyobj_str(o, &b);
        calc_buf_putc(&b, '\n');
      }
      /* 200s print steps after the result line: compare the first line only. */
      size_t want = st == 200 ? (size_t)(strchr(prints, '\n') - prints + 1) : strlen(prints);
      if (r == 0 && (V[i].quirk || (b.len == want && memcmp(b.data, prints, want) == 0))) {
        ok++;
      } else {
        bad++;
        fprintf(stderr, "  response %s: got '%.*s' want '%.*s'\n", V[i].name, (int)b.len,
                (const char *)b.data, (int)want, prints);
      }
      calc_pyobj_free(o);
      calc_buf_free(&b);
    }
  }
  printf("response decode + str(): %zu/%zu\n", ok, ok + bad);
  assert_int_equal(bad, 0);
}

/* A complex (the quirk neg-frac-pow's result) and Python's repr rules. */
static void test_repr(void **state) {
  (void)state;
  for (size_t i = 0; i < NV; i++) {
    if (strcmp(V[i].name, "neg-frac-pow") != 0) continue;
    calc_pyobj *o;
    calc_exc e;
    assert_int_equal(calc_unpickle_response(V[i].steps, V[i].steps_n, &o, &e), 0);
    calc_buf b;
    calc_buf_init(&b, 0);
    calc_pyobj_repr(o->items[0], &b);
    calc_buf_putc(&b, 0);
    assert_string_equal((char *)b.data, "(1.0000000000000002+1.7320508075688772j)");
    calc_buf_free(&b);
    calc_pyobj_free(o);
  }
  /* ("it's", 'a "b"', '\n\x00é', b"x'y", None, True, False, -1, [], ({},)) */
  static const uint8_t q[] = {0x80, 0x04, 0x28, 0x8c, 0x04, 'i', 't', '\'', 's', 0x8c, 0x05, 'a', ' ', '"', 'b',
                              '"', 0x8c, 0x04, '\n', 0x00, 0xc3, 0xa9, 'C', 0x03, 'x', '\'', 'y', 'N', 0x88,
                              0x89, 0x4a, 0xff, 0xff, 0xff, 0xff, ']', '}', 0x85, 't', '.'};
  calc_pyobj *o;
  calc_exc e;
  assert_int_equal(calc_unpickle_response(q, sizeof q, &o, &e), 0);
  calc_buf b;
  calc_buf_init(&b, 0);
  calc_pyobj_repr(o, &b);
  calc_buf_putc(&b, 0);
  assert_string_equal((char *)b.data,
                      "(\"it's\", 'a \"b\"', '\\n\\x00\xc3\xa9', b\"x'y\", None, True, False, -1, [], ({},))");
  calc_buf_free(&b);
  calc_pyobj_free(o);
}

/* ---- legacy-protocol.jsonl ---- */

static uint8_t *proto_response(const char *name, size_t *n, uint8_t **req, size_t *req_n) {
  size_t len;
  char *txt = read_file("legacy-protocol.jsonl", &len);
  assert_non_null(txt);
  char pat[80];
  snprintf(pat, sizeof pat, "\"name\": \"%s\"", name);
  char *line = strstr(txt, pat);
  assert_non_null(line);
  while (line > txt && line[-1] != '\n') line--;
  char *end = strchr(line, '\n');
  if (!end) end = line + strlen(line);
  uint8_t *resp = NULL;
  char *h = jstr(jfind(line, end, "response"), NULL);
  if (h) resp = unhex(h, n);
  free(h);
  if (req) {
    h = jstr(jfind(line, end, "request"), NULL);
    *req = h ? unhex(h, req_n) : NULL;
    free(h);
  }
  free(txt);
  return resp;
}

/* Request payload (after the 12-byte header) -> decoder's exception -> the vector's response. */
static void check_request_error(const char *name) {
  size_t rn = 0, qn = 0;
  uint8_t *req = NULL;
  uint8_t *resp = proto_response(name, &rn, &req, &qn);
  assert_non_null(req);
  assert_true(qn >= 12);
  calc_tree t;
  calc_exc e;
  assert_int_equal(calc_unpickle_request(req + 12, qn - 12, &t, &e), -1);
  assert_null(t.root);
  calc_buf b;
  calc_buf_init(&b, 0);
  assert_int_equal(calc_pickle_exception(&e, &b), 0);
  if (resp) {
    assert_true(rn > 12);
    if (!same(&b, resp + 12, rn - 12)) dump_diff("protocol", name, &b, resp + 12, rn - 12);
    assert_true(same(&b, resp + 12, rn - 12));
  } else {
    assert_string_equal(e.type, "ValueError");
    assert_string_equal(e.msg, "Received data could not be deserialized");
  }
  calc_buf_free(&b);
  free(req);
  free(resp);
}

static void test_protocol_errors(void **state) {
  (void)state;
  check_request_error("garbage-payload");
  check_request_error("not-an-expression");
  check_request_error("empty-payload");
  check_request_error("malicious-pickle");
}

/* The 500s and the TypeError: decoding the vector's payload and encoding it again. */
static void check_reencode(const char *name) {
  size_t rn = 0;
  uint8_t *resp = proto_response(name, &rn, NULL, NULL);
  assert_non_null(resp);
  const uint8_t *p = resp + 12;
  size_t n = rn - 12;
  calc_pyobj *o;
  calc_exc e;
  assert_int_equal(calc_unpickle_response(p, n, &o, &e), 0);
  calc_buf b;
  calc_buf_init(&b, 0);
  if (o->kind == CALC_PY_TUPLE) {
    assert_int_equal(o->n, 2);
    calc_strlist sl;
    calc_strlist_init(&sl);
    for (size_t i = 0; i < o->items[1]->n; i++)
      calc_strlist_push(&sl, o->items[1]->items[i]->str, o->items[1]->items[i]->len);
    calc_pickle_result(&o->items[0]->num, &sl, &b);
    calc_strlist_free(&sl);
  } else if (strcmp(o->module, "api") == 0 && o->n == 2) {
    assert_int_equal(o->items[1]->kind, CALC_PY_EXC);
    calc_pickle_proxy_error(o->items[1]->name, o->items[1]->items[0]->str, &b);
    calc_buf s;
    calc_buf_init(&s, 0);
    calc_pyobj_str(o, &s);
    calc_buf_putc(&s, 0);
    assert_string_equal((char *)s.data,
                        "('Internal proxy error', CalculatorServerError('Connection refused by server and the "
                        "request was not in the cache/it was stale'))");
    calc_buf_free(&s);
  } else if (strcmp(o->module, "api") == 0) {
    calc_pickle_api_error(o->name, o->items[0]->str, &b);
  } else {
    calc_exc x;
    calc_exc_set(&x, o->name, "%s", o->items[0]->str);
    calc_pickle_exception(&x, &b);
  }
  if (!same(&b, p, n)) dump_diff("reencode", name, &b, p, n);
  assert_true(same(&b, p, n));
  calc_buf_free(&b);
  calc_pyobj_free(o);
  free(resp);
}

static void test_protocol_reencode(void **state) {
  (void)state;
  check_reencode("short-request");
  check_reencode("total-length-too-small");
  check_reencode("response-instead-of-request");
  check_reencode("upstream-refused");
  check_reencode("steps-no-cache");
}

int main(void) {
  calc_alloc_init();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_request_roundtrip),
    cmocka_unit_test(test_parse_encode),
#ifdef HAVE_EVAL
    cmocka_unit_test(test_eval_encode),
#endif
    cmocka_unit_test(test_response_decode),
    cmocka_unit_test(test_repr),
    cmocka_unit_test(test_protocol_errors),
    cmocka_unit_test(test_protocol_reencode),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
