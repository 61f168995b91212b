/* test_pickle_vectors.c: the payload codec against the reference's own vectors
 * (captures/vectors/legacy-expressions.jsonl and legacy-protocol.jsonl, or $CALC_VECTORS),
 * and the same made under CPython 3.11.2 (legacy-*-py3.11.2.jsonl: enum members pickled by
 * name, getattr(Associativity, 'LEFT')), each encoded in its own flavour. Also: each file's
 * requests decoded and encoded in the other flavour give the other file's bytes.
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
#include "helpers/vectors.h"

/* ---- a tiny JSON field extraction: one object per line, payloads are hex strings ---- */

static char *read_file(const char *name, size_t *len) {
  char path[1024];
  FILE *f = fopen(test_vectors_path(name, path, sizeof path), "rb");
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

/* The files and the flavour the current group checks (set by its setup). */
static const char *EXPR_FILE, *PROTO_FILE;
static calc_pickle_flavour FLAV;

static vec *load_expr_vectors(const char *file, size_t *count) {
  size_t len;
  char *txt = read_file(file, &len);
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

static int setup_by_value(void **state) {
  (void)state;
  EXPR_FILE = "legacy-expressions.jsonl";
  PROTO_FILE = "legacy-protocol.jsonl";
  FLAV = CALC_PICKLE_BY_VALUE;
  V = load_expr_vectors(EXPR_FILE, &NV);
  return V ? 0 : -1;
}

static int setup_getattr(void **state) {
  (void)state;
  EXPR_FILE = "legacy-expressions-py3.11.2.jsonl";
  PROTO_FILE = "legacy-protocol-py3.11.2.jsonl";
  FLAV = CALC_PICKLE_GETATTR;
  V = load_expr_vectors(EXPR_FILE, &NV);
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
    if (r == 0) calc_pickle_request_flavour(&t, FLAV, &b);
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
  printf("%s request roundtrip: %zu/%zu non-quirk byte-exact, %zu/%zu quirk\n", EXPR_FILE, ok, ok + bad, qok, nq);
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
    if (r == 0) calc_pickle_request_flavour(&t, FLAV, &b);
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
  printf("%s parse -> request: %zu/%zu non-quirk byte-exact\n", EXPR_FILE, ok, ok + bad);
  assert_int_equal(bad, 0);
}

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
  printf("%s eval -> response: %zu/%zu non-quirk payloads byte-exact\n", EXPR_FILE, ok, ok + bad);
  assert_int_equal(bad, 0);
}

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
  printf("%s response decode + str(): %zu/%zu\n", EXPR_FILE, ok, ok + bad);
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

/* pickle.dumps (CPython 3.11) of rand(1, 2.5) + rand(-7, 10**30), both rand Functions being the
 * one Function whose function is random.Random(2).uniform after one gauss() call (fuzz/make_corpus.py
 * builds it from stand-in classes): getattr(Random() + BUILD (3, 625 ints, gauss_next), 'uniform'). */
static const char rand_pickle_hex[] =
  "80049564100000000000008c0a63616c63756c61746f72948c0a42696e617279457870729493942981947d94288c0c6c"
  "6566745f6f706572616e649468008c1046756e6374696f6e43616c6c457870729493942981947d94288c0866756e6374"
  "696f6e9468008c0846756e6374696f6e9493942981947d94288c046e616d65948c0472616e6494680a8c086275696c74"
  "696e73948c07676574617474729493948c0672616e646f6d948c0652616e646f6d9493942952944b03288a05d446a4a6"
  "004aa12d98174ad012e0058a05936ba08d008a05ca5cca81008a05d1f34a95008a05db42e78b004aed0a46728a051d08"
  "d2fb004aa1bc21378a0554b779e8004a5f33b75b4a5b46fc1a4a6b301d3d8a05452af0d1008a05c00cf8bc008a05dfb2"
  "4595004a788bd5518a058c42eca9004a3754247f4a56a1e9628a05d5c899ac004aa5306c5f4ac36a083c8a05b6ad59cd"
  "004ada4df0574aa70c3e344a337cf47a4a9b26fc0a8a0547852ea0004a3827015b8a05d0174e80004a977c05364a52b1"
  "1b774a5014ca084aa39fca018a059fa9b980008a05017a3ab9008a05b8e172fe004abea7bf304a0a02132a8a05996527"
  "ca008a05471cfed7008a059334efc9008a053ad2bacc004a024522588a0562899db9004a71148a434a906b693c4ae5fd"
  "b21b4a5cd7e0554aa7071c618a0582bdabd3008a05257787c6004a2a6c305e8a05ed4b5e81008a0550a569e9008a054e"
  "7b1fdf008a05c59fe3d2008a05200e05e6008a0587e9c399008a05bee2cd8d004a0e9c5c624a438eb13f4a6fc23f1d4a"
  "10fbb6004ac1d38a388a05e7347eb2008a05be50d0e4008a05b347c1ee008a05b1c6908e008a051fe3549b008a057ac4"
  "3ff5004ad62d7d438a05f8162af0004a659909038a05b1f873e1008a058f2fa0b0004acf5f952f4aa602f37b4ad1ec64"
  "758a05e44569a6004ab32328358a059c1eb4c4008a053c1884bc008a05f43cf58d004a7a6fa7428a05f53352db008a05"
  "b0790bf1008a0599294994004a2b4e8e0b8a05d81a63c8008a05009a9fec008a05a72c88c8004a2d2253398a0515ca67"
  "ac008a05e58529ab008a05789533bc008a05b6a711a5008a05be9ec1f2004aa26e503d4a5a14f8594ae6a9c9008a056a"
  "a0f6ee008a0584844187008a05395f8cc4004ac1ca90338a05caeb42a2008a051e31abaf004a352c62318a0562fd3fb8"
  "008a056c5234c3004a8d1b18054a7f8c33398a058ed9919b004a8e678a728a0574190991004aa0f3b8684a15ddbb198a"
  "05d9afacd9004a3e4fe6284aabd02d2a4ad460595a4a65ef22734a51d84a728a05f2809198008a0552ae63e6004a3d67"
  "41528a05e1374eb9004a9740497b4a06f58a6b8a05052ef8f9004a45c580014ab814e4678a05fd107d9d004a2ed3416d"
  "8a0563f203ee008a05d3ed8992008a05e1c94a88008a0576a777b9004a4c5591368a05f9144cc0004a5781cd508a054d"
  "af16b0004ad7a09a258a05531897c7004ad966c40a4a73a7aa154af8a3223e4a382a85568a056cd3fdc1008a0546c380"
  "aa004ab4fffa5d4a9ea95d3d4acda93f618a05dc12159f004a24e5283c8a054ce78efe008a05d89d7fb8008a052d975b"
  "c3004a3aca0d3f8a05f2c952cf008a05b9c251f2008a052fbcd388004a04ccaf004af0788d358a05a817eecf004a05d8"
  "01614aeb053d164a56de0f104a4efa90598a0529674a9d004a4e1d06338a0502589f90004a7891a0728a05bd68bdec00"
  "4a2fb7842e4a9072c3234aee31cd278a05ce7da4cf004a3f78666d4af08ad74b8a05311e32f0008a0513b9e1b8004af3"
  "60ff0a8a0592596cf0004a24ad9c4a4a17d1b87b4a4e98d15d8a05ef1f1dc9004a19662e0b8a05c6dbf58a008a053ca8"
  "1ada008a054fa659b8004ae46f6a1e4a8d171f238a0515e995cf008a05a6e619e5004a5216c4558a05e692138a008a05"
  "2d71b6f7004a8fe2a0144ae59143754a0d3236694ab131e51a8a05e891ee8e004ac0471f094a345d69388a05417ecc98"
  "008a059b89c5b6004a732212718a050068baa8008a058ed74ee1004a10d8fc724a9f55300a4adc2c20584afdf9c5618a"
  "05beca93f6008a058e48e8b7008a05034487ed004a709d3e288a0540a7aadf004a6d2a98468a05a5d0cfb7004ab3fd0e"
  "6b4afa33a8384ae3e3085a4a53b5196a8a058906c5cb008a0585881bda008a05d166dec7004acf834b204a0a6214354a"
  "2faf1e7b8a053734d688004ab7cac25e4a25ea056a8a0512cb86e3004aca74720d4acc91b5648a054469f8a0004a4fa0"
  "f3794a3ba37a4a8a0535c193d1008a054ec1ea8e004a2f2272594a3882bf034a618833478a0547ba1e8e004ae0d91664"
  "8a052195cd99008a05d714bbb1008a05acee2198008a05acb755b7004a83c74a3c4acf84f6594a0791890b4a54969209"
  "4af8ebd04c8a05c73f8b84008a053825d8d9004aa1c90e714ad79ad1144ae5572d5c8a055de6dbff008a05b16c479c00"
  "4aef68d2304a05c3234a8a050a7031ba004a8f5d13208a054d38a5e0004a395d8b708a05c2e6ade0004a8becbe164a26"
  "60e4424a7b0419404a492e3e614a81d332474a077ec7284acd79e8338a05e3fe2ccb004ad86711048a0579ffecb1004a"
  "38baa4008a054d7bbd98008a0548ee2ace008a05fd7ca1b9004a75bfd8184af7be971b8a05d646dfd2008a05f50f4ec1"
  "008a054f131cac008a05e6f072eb004aa1f634238a0549c7a3f6008a05e8ae88eb008a05f5018be4004ab236fa678a05"
  "538ee2fb004a01aa807c8a05b2f9e897008a05cfef14c9008a05c73ffb92008a0542139ee1004aad16b3134a02855727"
  "8a05cffd5ea7008a051df560fa004a18f58b178a05d198cadc004a1045dc038a05d17595f6008a0558cb6abd004aa4b6"
  "946c4a6f2028438a05c8d630e9004a899ccb668a052f777afc008a053eab25e7004aaed74b714a3f1a280b4ae6d64c37"
  "8a05edb46aaa004a00963d0e8a052f2ba1d0008a0521122e8a008a051e5acfb3008a057f155efe004ad5578d128a051e"
  "bd9ccf004ac07ad16b4a5c4754554ac3d703704abca53c2b4ab39711474aba6f5c088a05e632fd9f004a1b20327b8a05"
  "dd5c69ba008a05ae82f9fc008a052c812895004accbc0b634ae12abf3a4a28171f634a859722548a053560d9a2008a05"
  "e43ce8ec004a78eb946a8a05f90c74c6004a3ade77278a0519087d80008a05176d2bed004a5561c8564a5d96db414a80"
  "a449418a05fb61d4e0008a05f05d3c88008a056321fde4004ae3722b0a8a05ed3adccc004a5533c76d8a0584f09ae900"
  "8a05420095f2008a0500fe04f5004a12f52f5c8a05f79b69da008a0511297a92004a77f3a1114a7ae4063d4a54652d74"
  "8a058758cac2004aa22bdf268a0519607884008a05dade3fc0004af3c43a2c8a05c56ca9d1008a053be0bdf4004a0dd3"
  "b97e8a057d0ec2ef004a559fd22f4afc0d27224aafbf091f4a16cabc594a64ef41004a68abc06d4afca5a87e4a5ea406"
  "438a053c778dfe004a1350675e4a53e269324add2eaf2a8a05e0125ced004a269c112b4a00179e508a052c03ced3004a"
  "f8c332728a05fdc1faf2004ad6f6c4554a7e2c4c638a05f27fa4ec004abd652f294a83a3bf238a0514fbd0a8004af107"
  "fd644a4e502e614a9e4d56058a0505157dcb008a05030130d8004ae44c86644a035d53528a05657a04e4008a0541e116"
  "ce004a21cc87514a6292c0364a7b335f2c4ac567cb574a73813f6d4aa1897e114acfc842684a003f6e4a8a057ce6dfaf"
  "004ab619404a8a05ba11adcb008a05c3cca9d0004a6cd16c1b4ad8fe21524ab33f09374a97c5764d4ab28a63634aa8ed"
  "9b644ac2d1fb624ad31994114af128286d4ad39add058a058719ffb6004a87e36c168a058062039d008a052daa16e500"
  "8a0527ebb793004a7e2233648a051c41efcd004a211a98394af462a91d4a9228081d4a23275a128a05c55556f5004ac0"
  "7fd03a4a148757384a25290e0d8a05cbf2dbda004aa4a5bc0b8a05300536ba004a7aa0850b4ac99e8b314aca688a2d4a"
  "f927d5064a9648005d8a053ab5a0b3008a0595ba70a5008a054b4f6b8b004ac042d2328a051a64c1d7004aca74f0414a"
  "4b2b44168a05582da5ba008a05dd3fc3c0008a052cb17480004a420662028a052c6de4ed008a05e91ee6cc008a051dd2"
  "02c3004acf11e20a4a5bbab3798a05fa4255d9004a22f1506c4aff68af758a0594c70d9c008a05b4cf75e3004a142bd7"
  "378a050de792a1008a053ed1fc81008a050af8b6c6008a05c8beffcf008a05d82240aa008a05f99b80cf004a4c47356a"
  "4ac38151658a05581ca1ad004a05b0b5708a058cc1be82008a058096fcce008a05844427aa008a05364778eb004a950c"
  "54758a0541ffdba1008a0574d416ce004a25ad13644a78d19c398a058ddad8f6008a05b1fb3ebf008a058e558a85008a"
  "050d6c99e2008a05472632ce004ace2e665f8a05f64dd5d0008a05eb480cfd004a83b1876e8a05a7bdf5d8004a6a6394"
  "244ae30c712b4ab77372318a055791a8ad008a05d2b91bee008a05f6722ca8008a05c38525c1008a05a66e61a1008a05"
  "0df423a8008a05b904f8a0004af4cbdc164a76f254594a7c9de1088a059aa4ebb6004a54a0ac458a05b8098aa0004a19"
  "e5ca2f4a8bcd4c288a05819962dc008a05a81281ae008a05441863ab004a0bb3c44e8a05f3bfd1f0004a2160ab508a05"
  "e2c7c3a1004a2770661a8a0500c3c5d7004a73c5e4188a050f10d7ee008a05d33baeb3004a72962d1c4afef410574a92"
  "5557078a05827be89e004aa13c54744a06d1945a8a05740960b9004a79f334384aeb993a734ac2c2b8008a0518c6cbff"
  "004a5aeaae528a05a4ba76d0004a604cdc408a05e6c6a6c3004a189537584a85d0727a8a053ab5a9c7008a059668feeb"
  "008a05ea2fb1e3008a05b8f0ef9a004a6706fd588a050e8588d8004a8624c9538a05ac63e2bb008a0590b27a85008a05"
  "0c17d6b2008a05f4985ea6008a05349944a8004a40aacf6a4a7d4eba1c4af0f814628a055a98daf5004a5fda28088a05"
  "c5c17dc8004a93a9e2624ad97cbb538a0503edc8df008a05e24cf1e1008a051809fec3008a055db91f8a004ac6c0a61a"
  "4ab23e2f6f8a0568fa68c0004a1e2f86098a05fa17a38d008a0583fdabc6004a32e3c65a4ab72409654a70cf6d198a05"
  "2548aec4008a05aeeb0883008a0598e8c480004a5f341c5c4ae4429e008a05cc5505eb008a0560af26d2008a059e826a"
  "f1004aeca808544a522a8f074aa0ebce444a18d2b5338a05fa1175ec004ac1f31b344abc2ae23e8a0571719dcb008a05"
  "d0f944f2004a13b07f7b4a5889b9214ae70de02d8a053787f7ee008a054ff01684004ab2d741184a03a4b72f8a05d352"
  "1e90004a63ccbd1b8a05c30b4388004a103bfc4f8a05b4f1cca0008a057778a684004a97c90c7c8a05535b9f93004a06"
  "63fd658a0583fcfc9f008a05ce12718a008a0597e2a8e1004b04749447bfe53619662587768794628c07756e69666f72"
  "6d948694529475628c0461726773945d942868008c08436f6e7374616e749493942981947d948c0576616c7565944b01"
  "736268202981947d94682347400400000000000073626575628c086f70657261746f729468008c0e42696e6172794f70"
  "657261746f729493942981947d94288c0673796d626f6c948c012b94680a8c095f6f70657261746f72948c0361646494"
  "93948c0d6173736f6369617469766974799468008c0d4173736f6369617469766974799493944b008594529475628c0d"
  "72696768745f6f706572616e649468072981947d9428680a680d681d5d942868202981947d9468234af9ffffff736268"
  "202981947d9468238a0d00000040eaed7446d09c2c9f0c736265756275622e";
static const uint32_t rand_mt0 = 2795783892u, rand_mt623 = 3785941655u, rand_pos = 4u;
static const double rand_gauss = -0.6628539080668208;

static void test_rand_shape(void **state) {
  (void)state;
  size_t n;
  uint8_t *p = unhex(rand_pickle_hex, &n);
  calc_tree t;
  calc_exc e;
  assert_int_equal(calc_unpickle_request(p, n, &t, &e), 0);
  assert_non_null(t.rng);
  assert_int_equal(t.rng->mt[0], rand_mt0);
  assert_int_equal(t.rng->mt[623], rand_mt623);
  assert_int_equal(t.rng->pos, rand_pos);
  assert_true(t.rng->has_gauss && t.rng->gauss_next == rand_gauss);
  assert_int_equal(t.root->kind, CALC_EXPR_BINARY);
  assert_int_equal(t.root->u.bin.left->u.call.fn, CALC_FN_RAND);
  calc_buf b;
  calc_buf_init(&b, 0);
  assert_int_equal(calc_pickle_request(&t, &b), 0);
  assert_true(same(&b, p, n));
  calc_buf_free(&b);
  calc_tree_free(&t);
  free(p);
}

/* ---- legacy-protocol.jsonl (and its py3.11.2 twin) ---- */

static uint8_t *proto_response(const char *name, size_t *n, uint8_t **req, size_t *req_n) {
  size_t len;
  char *txt = read_file(PROTO_FILE, &len);
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

/* The same expressions under both Pythons: decoding one file's request and encoding it in the
 * other flavour gives the other file's request, byte for byte; the 3.11.2 file differs exactly
 * where an operator (and so an Associativity) is in the graph. */
static void test_cross_flavour(void **state) {
  (void)state;
  size_t na, nb;
  vec *a = load_expr_vectors("legacy-expressions.jsonl", &na);
  vec *b = load_expr_vectors("legacy-expressions-py3.11.2.jsonl", &nb);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(na, nb);
  size_t ok = 0, bad = 0, differ = 0;
  for (size_t i = 0; i < na; i++) {
    assert_string_equal(a[i].name, b[i].name);
    differ += a[i].req_n != b[i].req_n || memcmp(a[i].req, b[i].req, a[i].req_n) != 0;
    for (int dir = 0; dir < 2; dir++) {
      const vec *from = dir ? &b[i] : &a[i], *to = dir ? &a[i] : &b[i];
      calc_tree t;
      calc_exc e;
      calc_buf out;
      calc_buf_init(&out, 0);
      int r = calc_unpickle_request(from->req, from->req_n, &t, &e);
      if (r == 0) calc_pickle_request_flavour(&t, dir ? CALC_PICKLE_BY_VALUE : CALC_PICKLE_GETATTR, &out);
      if (r == 0 && same(&out, to->req, to->req_n)) {
        ok++;
      } else {
        bad++;
        dump_diff(dir ? "getattr -> by value" : "by value -> getattr", a[i].name, &out, to->req, to->req_n);
      }
      calc_tree_free(&t);
      calc_buf_free(&out);
    }
  }
  printf("cross-flavour re-encoding: %zu/%zu byte-exact (%zu of %zu requests differ between the files)\n", ok,
         ok + bad, differ, na);
  free_vectors(a, na);
  free_vectors(b, nb);
  assert_int_equal(bad, 0);
  assert_true(differ > 200);
}

int main(void) {
  calc_alloc_init();
  const struct CMUnitTest by_value[] = {
    cmocka_unit_test(test_request_roundtrip),
    cmocka_unit_test(test_parse_encode),
    cmocka_unit_test(test_eval_encode),
    cmocka_unit_test(test_response_decode),
    cmocka_unit_test(test_repr),
    cmocka_unit_test(test_repr_table),
    cmocka_unit_test(test_rand_shape),
    cmocka_unit_test(test_protocol_errors),
    cmocka_unit_test(test_protocol_reencode),
    cmocka_unit_test(test_cross_flavour),
  };
  const struct CMUnitTest getattr_flavour[] = {
    cmocka_unit_test(test_request_roundtrip),
    cmocka_unit_test(test_parse_encode),
    cmocka_unit_test(test_eval_encode),
    cmocka_unit_test(test_response_decode),
    cmocka_unit_test(test_protocol_errors),
    cmocka_unit_test(test_protocol_reencode),
  };
  int failed = cmocka_run_group_tests_name("enum members by value (CPython 3.9-3.10, 3.11.7+)", by_value,
                                           setup_by_value, teardown);
  failed += cmocka_run_group_tests_name("enum members by name (CPython 3.11.2)", getattr_flavour, setup_getattr,
                                        teardown);
  return failed;
}
