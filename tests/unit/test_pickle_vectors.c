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
  return !b->failed && b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
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

/* Generated with CPython 3.11: pickle.dumps(obj), str(obj), repr(obj) of the unpickled obj, hex. */
static const char *const repr_cases[][3] = {
  {"80049539000000000000008c086275696c74696e73948c115a65726f4469766973696f6e4572726f729493948c106469766973696f6e206279207a65726f94859452942e",
   "6469766973696f6e206279207a65726f",
   "5a65726f4469766973696f6e4572726f7228276469766973696f6e206279207a65726f2729"},
  {"80049544000000000000008c086275696c74696e73948c0d4f766572666c6f774572726f729493944b228c1d4e756d65726963616c20726573756c74206f7574206f662072616e676594869452942e",
   "2833342c20274e756d65726963616c20726573756c74206f7574206f662072616e67652729",
   "4f766572666c6f774572726f722833342c20274e756d65726963616c20726573756c74206f7574206f662072616e67652729"},
  {"8004951e000000000000008c086275696c74696e73948c0a56616c75654572726f729493942952942e",
   "",
   "56616c75654572726f722829"},
  {"80049527000000000000008c086275696c74696e73948c0a56616c75654572726f729493948c0161948c016294869452942e",
   "282761272c2027622729",
   "56616c75654572726f72282761272c2027622729"},
  {"80049526000000000000008c086275696c74696e73948c0a56616c75654572726f729493948c046974277394859452942e",
   "69742773",
   "56616c75654572726f722822697427732229"},
  {"8004952a000000000000008c086275696c74696e73948c0a56616c75654572726f729493948c08736179202268692294859452942e",
   "7361792022686922",
   "56616c75654572726f72282773617920226869222729"},
  {"8004952e000000000000008c086275696c74696e73948c0a56616c75654572726f729493948c0c626f7468202720616e64202294859452942e",
   "626f7468202720616e642022",
   "56616c75654572726f722827626f7468205c2720616e6420222729"},
  {"80049521000000000000008c086275696c74696e73948c084b65794572726f729493948c016b94859452942e",
   "276b27",
   "4b65794572726f7228276b2729"},
  {"80049537000000000000008c086275696c74696e73948c1146696c654e6f74466f756e644572726f729493944b028c0c4e6f20737563682066696c6594869452942e",
   "5b4572726e6f20325d204e6f20737563682066696c65",
   "46696c654e6f74466f756e644572726f7228322c20274e6f20737563682066696c652729"},
  {"80049542000000000000008c086275696c74696e73948c16436f6e6e656374696f6e526566757365644572726f729493944b6f8c12436f6e6e656374696f6e207265667573656494869452942e",
   "5b4572726e6f203131315d20436f6e6e656374696f6e2072656675736564",
   "436f6e6e656374696f6e526566757365644572726f72283131312c2027436f6e6e656374696f6e20726566757365642729"},
  {"80049538000000000000008c086275696c74696e73948c1146696c654e6f74466f756e644572726f729493944b028c026e66948c0866696c652e74787494879452942e",
   "5b4572726e6f20325d206e663a202766696c652e74787427",
   "46696c654e6f74466f756e644572726f7228322c20276e662729"},
  {"80049534000000000000008c086275696c74696e73948c0f5065726d697373696f6e4572726f72949394284b018c0178948c0161944e8c016294749452942e",
   "5b4572726e6f20315d20783a20276127202d3e20276227",
   "5065726d697373696f6e4572726f7228312c2027782729"},
  {"80049537000000000000008c086275696c74696e73948c16436f6e6e656374696f6e526566757365644572726f729493944b6f8c077265667573656494869452942e",
   "5b4572726e6f203131315d2072656675736564",
   "436f6e6e656374696f6e526566757365644572726f72283131312c2027726566757365642729"},
  {"80049527000000000000008c086275696c74696e73948c074f534572726f729493948c086a757374206f6e6594859452942e",
   "6a757374206f6e65",
   "4f534572726f7228276a757374206f6e652729"},
  {"80049520000000000000008c086275696c74696e73948c0c54696d656f75744572726f729493942952942e",
   "",
   "54696d656f75744572726f722829"},
  {"8004953d000000000000008c086275696c74696e73948c09547970654572726f729493948c1c27696e7427206f626a656374206973206e6f74206974657261626c6594859452942e",
   "27696e7427206f626a656374206973206e6f74206974657261626c65",
   "547970654572726f72282227696e7427206f626a656374206973206e6f74206974657261626c652229"},
  {"80049511000000000000004b015d94288c0161948c0162946586942e",
   "28312c205b2761272c202762275d29",
   "28312c205b2761272c202762275d29"},
  {"8004950e000000000000004740040000000000005d9486942e",
   "28322e352c205b5d29",
   "28322e352c205b5d29"},
  {"80049532000000000000008c086275696c74696e73948c07636f6d706c6578949394473ff0000000000000474000000000000000869452945d9486942e",
   "2828312b326a292c205b5d29",
   "2828312b326a292c205b5d29"},
  {"8004952e000000000000008c086275696c74696e73948c07636f6d706c6578949394478000000000000000473ff0000000000000869452942e",
   "282d302b316a29",
   "282d302b316a29"},
  {"8004952e000000000000008c086275696c74696e73948c07636f6d706c657894939447000000000000000047bff0000000000000869452942e",
   "2d316a",
   "2d316a"},
  {"8004952e000000000000008c086275696c74696e73948c07636f6d706c6578949394477e6ddd4baa009303477ff8000000000000869452942e",
   "2831652b3330312b6e616e6a29",
   "2831652b3330312b6e616e6a29"},
  {"8004952e000000000000008c086275696c74696e73948c07636f6d706c6578949394474000000000000000470000000000000000869452942e",
   "28322b306a29",
   "28322b306a29"},
  {"8004952e000000000000008c086275696c74696e73948c07636f6d706c6578949394473ff800000000000047c002000000000000869452942e",
   "28312e352d322e32356a29",
   "28312e352d322e32356a29"},
  {"80049511000000000000007d94288c0161944b014b024b038594752e",
   "7b2761273a20312c20323a2028332c297d",
   "7b2761273a20312c20323a2028332c297d"},
  {"8004950a00000000000000430678277900ff22942e",
   "6227785c27795c7830305c7866662227",
   "6227785c27795c7830305c7866662227"},
  {"8004952c000000000000008c28746162096e6c0a62735c207f20c28020c2a020c2ad20c3a920cf8020f09f988020e280a820efbbbf942e",
   "746162096e6c0a62735c207f20c28020c2a020c2ad20c3a920cf8020f09f988020e280a820efbbbf",
   "277461625c746e6c5c6e62735c5c205c783766205c783830205c786130205c78616420c3a920cf8020f09f9880205c7532303238205c756665666627"},
  {"80044e2e",
   "4e6f6e65",
   "4e6f6e65"},
  {"8004882e",
   "54727565",
   "54727565"},
  {"8004892e",
   "46616c7365",
   "46616c7365"},
  {"80049505000000000000004b0185942e",
   "28312c29",
   "28312c29"},
  {"8004292e",
   "2829",
   "2829"},
  {"80045d942e",
   "5b5d",
   "5b5d"},
  {"80049510000000000000008a0d000000c015128bb92f63d360f32e",
   "2d31303030303030303030303030303030303030303030303030303030303030",
   "2d31303030303030303030303030303030303030303030303030303030303030"},
  {"8004950a00000000000000474341c37937e080002e",
   "31652b3136",
   "31652b3136"},
  {"8004950a00000000000000473eb0c6f7a0b5ed8d2e",
   "31652d3036",
   "31652d3036"},
  {"8004950a000000000000004780000000000000002e",
   "2d302e30",
   "2d302e30"},
  {"8004950a00000000000000477ff00000000000002e",
   "696e66",
   "696e66"},
  {"8004950a00000000000000477ff80000000000002e",
   "6e616e",
   "6e616e"},
  {"80049512000000000000005d94284b015d94284b025d944b036165652e",
   "5b312c205b322c205b335d5d5d",
   "5b312c205b322c205b335d5d5d"},
  {"80049508000000000000004e8c01789486942e",
   "284e6f6e652c2027782729",
   "284e6f6e652c2027782729"},
  {"8004953e000000000000008c086275696c74696e73948c0c52756e74696d654572726f7294939468008c0a56616c75654572726f729493948c05696e6e65729485945294859452942e",
   "696e6e6572",
   "52756e74696d654572726f722856616c75654572726f722827696e6e6572272929"},
  {"8004952a000000000000008c086275696c74696e73948c09457863657074696f6e9493944b014740040000000000004e879452942e",
   "28312c20322e352c204e6f6e6529",
   "457863657074696f6e28312c20322e352c204e6f6e6529"},
};

/* str() and repr() of CPython objects as CPython prints them: exceptions (the OSError family
 * included), str escapes and quote choice, bytes, complex, containers. */
static void test_repr_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof repr_cases / sizeof *repr_cases; i++) {
    size_t n, sn, rn;
    uint8_t *p = unhex(repr_cases[i][0], &n);
    uint8_t *ws = unhex(repr_cases[i][1], &sn);
    uint8_t *wr = unhex(repr_cases[i][2], &rn);
    calc_pyobj *o;
    calc_exc e;
    assert_int_equal(calc_unpickle_response(p, n, &o, &e), 0);
    calc_buf b;
    calc_buf_init(&b, 0);
    calc_pyobj_str(o, &b);
    if (!same(&b, ws, sn)) fprintf(stderr, "  str case %zu: '%.*s'\n", i, (int)b.len, (const char *)b.data);
    assert_true(same(&b, ws, sn));
    calc_buf_reset(&b);
    calc_pyobj_repr(o, &b);
    if (!same(&b, wr, rn)) fprintf(stderr, "  repr case %zu: '%.*s'\n", i, (int)b.len, (const char *)b.data);
    assert_true(same(&b, wr, rn));
    calc_buf_free(&b);
    calc_pyobj_free(o);
    free(p);
    free(ws);
    free(wr);
  }
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
    cmocka_unit_test(test_repr_table),
    cmocka_unit_test(test_protocol_errors),
    cmocka_unit_test(test_protocol_reencode),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
