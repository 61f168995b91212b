/* test_pickle_hostile.c: hostile payloads against both decoders.
 *
 * Each request case must get its 400 (a ValueError with one of the documented messages, no
 * tree) and nothing else: nothing runs (a payload calling os.system('touch FILE') leaves no
 * FILE), nothing crashes, nothing leaks (run under -DCALC_SANITIZE=ON). Also: every proper
 * prefix of valid payloads, and every single-byte corruption of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "calc/alloc.h"
#include "calc/limits.h"
#include "calc/pickle.h"
#include "calc/rng.h"
#include "helpers/failmalloc.h"
#include "pickle_internal.h"

#define MSG_DESER "Received data could not be deserialized"
#define MSG_NOTEXPR "Received data is not an Expression2"

/* ---- a small pickle writer for building hostile inputs ---- */
typedef struct {
  uint8_t *d;
  size_t n, cap;
} pb;

static void pb_put(pb *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->d = realloc(b->d, b->cap);
  }
  memcpy(b->d + b->n, p, n);
  b->n += n;
}
static void pb_op(pb *b, uint8_t op) { pb_put(b, &op, 1); }
static void pb_str(pb *b, const char *s) {
  uint8_t h[2] = {0x8c, (uint8_t)strlen(s)};
  pb_put(b, h, 2);
  pb_put(b, s, strlen(s));
}
static void pb_global(pb *b, const char *m, const char *n) {
  pb_str(b, m);
  pb_str(b, n);
  pb_op(b, PKL_STACK_GLOBAL);
}
static void pb_u32(pb *b, uint8_t op, uint32_t v) {
  uint8_t h[5] = {op, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  pb_put(b, h, 5);
}
static void pb_begin(pb *b) {
  memset(b, 0, sizeof *b);
  pb_op(b, 0x80);
  pb_op(b, 4);
}

/* The request decoder's verdict: must be -1 with a ValueError (or a calclab limit). */
static void expect_400(const uint8_t *p, size_t n, const char *want_msg) {
  calc_tree t;
  calc_exc e;
  memset(&e, 0, sizeof e);
  int r = calc_unpickle_request(p, n, &t, &e);
  assert_int_equal(r, -1);
  assert_null(t.root);
  assert_null(t.rng);
  assert_string_equal(e.type, "ValueError");
  if (want_msg) assert_string_equal(e.msg, want_msg);
  /* Any bytes at all must also leave the response decoder standing. */
  calc_pyobj *o = NULL;
  if (calc_unpickle_response(p, n, &o, &e) == 0) {
    calc_buf b;
    calc_buf_init(&b, 0);
    calc_pyobj_repr(o, &b);
    calc_pyobj_str(o, &b);
    calc_buf_free(&b);
    calc_pyobj_free(o);
  }
}

static void expect_400_pb(pb *b, const char *msg) {
  expect_400(b->d, b->n, msg);
  free(b->d);
}

static void test_os_system(void **state) {
  (void)state;
  char path[] = "/tmp/calc-pwned-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  unlink(path);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "touch %s", path);
  const char *mods[][2] = {{"posix", "system"}, {"os", "system"}, {"builtins", "eval"},
                           {"builtins", "exec"}, {"subprocess", "getoutput"}, {"nt", "system"}};
  for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
    pb b;
    pb_begin(&b);
    pb_global(&b, mods[i][0], mods[i][1]);
    pb_str(&b, cmd);
    pb_op(&b, 0x85);
    pb_op(&b, 'R');
    pb_op(&b, '.');
    expect_400_pb(&b, MSG_DESER);
  }
  /* The vector's own bytes (docs/protocol.md's malicious-pickle). */
  static const uint8_t mal[] = {0x80, 0x04, 0x95, 0x32, 0, 0, 0, 0, 0, 0, 0, 0x8c, 0x05, 'p', 'o', 's', 'i', 'x',
                                0x94, 0x8c, 0x06, 's', 'y', 's', 't', 'e', 'm', 0x94, 0x93, 0x94, 0x8c, 0x17,
                                'e', 'c', 'h', 'o', ' ', 'p', 'w', 'n', 'e', 'd', ' ', '>', ' ', '/', 't', 'm',
                                'p', '/', 'p', 'w', 'n', 'e', 'd', 0x94, 0x85, 0x94, 0x52, 0x94, 0x2e};
  expect_400(mal, sizeof mal, MSG_DESER);
  assert_int_equal(access(path, F_OK), -1);
}

/* getattr outside the rand and enum-member shapes, and getattr chains: refused on sight, as a
 * refused global is (the reference's pickle.loads would run them). */
static void test_getattr(void **state) {
  (void)state;
  pb b;
  /* builtins.getattr(builtins.getattr, 'x') */
  pb_begin(&b);
  pb_global(&b, "builtins", "getattr");
  pb_global(&b, "builtins", "getattr");
  pb_str(&b, "__globals__");
  pb_op(&b, 0x86);
  pb_op(&b, 'R');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
  /* getattr(getattr(random.Random(), 'uniform'), '__self__') as a Function's function */
  pb_begin(&b);
  pb_global(&b, "builtins", "getattr");
  pb_global(&b, "builtins", "getattr");
  pb_global(&b, "random", "Random");
  pb_op(&b, ')');
  pb_op(&b, 'R');
  pb_str(&b, "uniform");
  pb_op(&b, 0x86);
  pb_op(&b, 'R');
  pb_str(&b, "__self__");
  pb_op(&b, 0x86);
  pb_op(&b, 'R');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
  /* getattr on a str: getattr('os', 'system') */
  pb_begin(&b);
  pb_global(&b, "builtins", "getattr");
  pb_str(&b, "os");
  pb_str(&b, "system");
  pb_op(&b, 0x86);
  pb_op(&b, 'R');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
  /* A REDUCE on an allowed function (the reference would call _operator.add(1, 2)). */
  pb_begin(&b);
  pb_global(&b, "_operator", "add");
  pb_op(&b, 'K');
  pb_op(&b, 1);
  pb_op(&b, 'K');
  pb_op(&b, 2);
  pb_op(&b, 0x86);
  pb_op(&b, 'R');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
}

/* REDUCE whose callable is itself a REDUCE result; NEWOBJ on a non-class; BUILD on a global. */
static void test_nested_reduce_build(void **state) {
  (void)state;
  pb b;
  pb_begin(&b);
  pb_global(&b, "calculator", "Associativity");
  pb_op(&b, 'K');
  pb_op(&b, 0);
  pb_op(&b, 0x85);
  pb_op(&b, 'R');
  pb_op(&b, ')');
  pb_op(&b, 'R');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);

  pb_begin(&b);
  pb_global(&b, "calculator", "Constant");
  pb_op(&b, '}');
  pb_str(&b, "value");
  pb_op(&b, 'K');
  pb_op(&b, 1);
  pb_op(&b, 's');
  pb_op(&b, 'b'); /* BUILD on the class itself: setattr on a global */
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);

  pb_begin(&b);
  pb_global(&b, "_operator", "add");
  pb_op(&b, ')');
  pb_op(&b, 0x81); /* NEWOBJ on a function */
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);

  /* A second BUILD on the same object (its __setstate__ could be anything). */
  pb_begin(&b);
  pb_global(&b, "calculator", "Constant");
  pb_op(&b, ')');
  pb_op(&b, 0x81);
  pb_op(&b, '}');
  pb_op(&b, 'b');
  pb_op(&b, '}');
  pb_op(&b, 'b');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
}

/* Opcodes outside the allowlist: INST, OBJ, GLOBAL, PERSID, EXT1, NEWOBJ_EX, text ints. */
static void test_refused_opcodes(void **state) {
  (void)state;
  static const char inst[] = "\x80\x04(S'ls'\nios\nsystem\n.";
  expect_400((const uint8_t *)inst, sizeof inst - 1, MSG_DESER);
  static const char glob[] = "cos\nsystem\n(S'ls'\ntR.";
  expect_400((const uint8_t *)glob, sizeof glob - 1, MSG_DESER);
  pb b;
  pb_begin(&b);
  pb_op(&b, '(');
  pb_global(&b, "calculator", "Constant");
  pb_op(&b, 'o'); /* OBJ */
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
  /* (GET/PUT of an unset slot or an empty stack, DICT/LIST/TUPLE without MARK included) */
  static const uint8_t others[] = {'P', 'Q', 0x82, 0x83, 0x84, 0x92, 'S', 'g', 'p', 'd',
                                   'l', 't' + 0 /* TUPLE without MARK */, '2', 0x8d, 0x8e, 0x8f, 0x90, 0x91,
                                   0x96, 0x97, 0x98, 0xff, 0x00};
  for (size_t i = 0; i < sizeof others; i++) {
    uint8_t p[8] = {0x80, 0x04, others[i], '0', '\n', '.', '.', '.'};
    expect_400(p, sizeof p, MSG_DESER);
  }
}

/* Protocols 0-3 (text arguments, GLOBAL, copyreg._reconstructor): what CPython's picklers
 * write is read (a well-formed non-expression gets the reference's 'not an Expression2');
 * anything else, and every global outside the allowlist, is refused before use. */
static void expect_text(const char *p, const char *msg) { expect_400((const uint8_t *)p, strlen(p), msg); }

static void test_old_protocols(void **state) {
  (void)state;
  /* well formed, not an expression */
  expect_text("I0\n.", MSG_NOTEXPR);
  expect_text("I01\n.", MSG_NOTEXPR);
  expect_text("I-12345\n.", MSG_NOTEXPR);
  expect_text("L123456789012345678901234567890L\n.", MSG_NOTEXPR);
  expect_text("F-1.5e+300\n.", MSG_NOTEXPR);
  expect_text("Finf\n.", MSG_NOTEXPR);
  expect_text("Vabc\\u00e9\\U0001f600\n.", MSG_NOTEXPR);
  expect_text("(I1\nI2\nl.", MSG_NOTEXPR);
  expect_text("(Va\nI1\nd.", MSG_NOTEXPR);
  expect_text("I5\np0\ng0\n.", MSG_NOTEXPR);    /* PUT, GET */
  expect_text("c__builtin__\nobject\n.", MSG_NOTEXPR);
  /* malformed arguments: CPython's picklers never write these */
  const char *bad[] = {
      "I0x10\n.", "I 5\n.", "I010\n.", "I1_0\n.", "I\n.", "I5.", "I+\n.", "I5\x00\n.",
      "L12LL\n.", "Lx\n.", "F0x1p3\n.", "F1e500\n.", "F nan\n.", "Fnan(1)\n.", "F1_0\n.", "F\n.",
      "Vabc.", "V\\u12\n.", "V\\u12zz\n.", "V\\U00110000\n.", "V\\U0001F60\n.",
      "g5\n.", "I1\np-1\n.", "I1\np99999999999\n.", "I1\np\n.", "I1\ng0\n.",
      "(I1\nd.", "I1\nI2\nd.", "c__builtin__\n.", "cos\nsystem\n.", "cposix\nsystem\n.",
      "ccopy_reg\n_reconstructor\n(cos\nsystem\nc__builtin__\nobject\nNtR.",
      "ccopy_reg\n_reconstructor\n(ccalculator\nConstant\nc__builtin__\nmax\nNtR.",
      "ccalculator\nConst\x00ant\n.",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_text(bad[i], MSG_DESER);
  /* 4300 digits are read, 4301 are refused (CPython 3.11's int() limit) */
  static char big[4400];
  for (int digits = 4300; digits <= 4301; digits++) {
    big[0] = 'L';
    memset(big + 1, '7', (size_t)digits);
    memcpy(big + 1 + digits, "\n.", 3);
    expect_400((const uint8_t *)big, (size_t)digits + 3, digits == 4300 ? MSG_NOTEXPR : MSG_DESER);
  }
  /* GLOBAL lines are bounded (256 bytes), as is every text argument */
  static char longname[600];
  memset(longname, 'a', sizeof longname);
  longname[0] = 'c';
  longname[300] = '\n';
  memcpy(longname + 400, "\nN.", 4);
  expect_400((const uint8_t *)longname, 404, MSG_DESER);
}

/* Lengths and indexes claiming more than there is. */
static void test_lengths(void **state) {
  (void)state;
  pb b;
  pb_begin(&b);
  pb_op(&b, 'K');
  pb_op(&b, 1);
  pb_u32(&b, 'j', 0x7fffffff); /* LONG_BINGET out of range */
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);

  pb_begin(&b);
  pb_op(&b, 'K');
  pb_op(&b, 1);
  pb_op(&b, 0x94);
  pb_op(&b, 'h');
  pb_op(&b, 1); /* BINGET of an unset slot */
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);

  static const uint8_t frame[] = {0x80, 0x04, 0x95, 0, 0, 0, 0, 0x40, 0, 0, 0, 'K', 1, '.'};
  expect_400(frame, sizeof frame, MSG_DESER);
  static const uint8_t frame2[] = {0x80, 0x04, 0x95, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'K', 1, '.'};
  expect_400(frame2, sizeof frame2, MSG_DESER);
  static const uint8_t uni[] = {0x80, 0x04, 'X', 0xff, 0xff, 0xff, 0x7f, 'a', 'b', '.'};
  expect_400(uni, sizeof uni, MSG_DESER);
  static const uint8_t uni2[] = {0x80, 0x04, 'X', 0xff, 0xff, 0xff, 0xff, 'a', 'b', '.'};
  expect_400(uni2, sizeof uni2, MSG_DESER);
  static const uint8_t long4[] = {0x80, 0x04, 0x8b, 0xff, 0xff, 0xff, 0x7f, 1, '.'};
  expect_400(long4, sizeof long4, MSG_DESER);
  static const uint8_t long4neg[] = {0x80, 0x04, 0x8b, 0xff, 0xff, 0xff, 0xff, 1, '.'};
  expect_400(long4neg, sizeof long4neg, MSG_DESER);
  static const uint8_t badutf8[] = {0x80, 0x04, 0x8c, 2, 0xc3, 0x28, '.'};
  expect_400(badutf8, sizeof badutf8, MSG_DESER);
  static const uint8_t proto9[] = {0x80, 0x09, 'K', 1, '.'};
  expect_400(proto9, sizeof proto9, MSG_DESER);
  /* An int over CALC_MAX_INT_BITS in a Constant: refused before GMP sees it. */
  size_t nb = CALC_MAX_INT_BITS / 8 + 64;
  pb_begin(&b);
  pb_global(&b, "calculator", "Constant");
  pb_op(&b, ')');
  pb_op(&b, 0x81);
  pb_op(&b, '}');
  pb_str(&b, "value");
  pb_u32(&b, 0x8b, (uint32_t)nb);
  uint8_t *big = calloc(nb, 1);
  big[nb - 1] = 0x40;
  pb_put(&b, big, nb);
  free(big);
  pb_op(&b, 's');
  pb_op(&b, 'b');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_DESER);
  /* A payload over CALC_MAX_PAYLOAD. */
  size_t n = CALC_MAX_PAYLOAD + 1;
  uint8_t *p = calloc(n, 1);
  p[0] = 0x80;
  p[1] = 4;
  memset(p + 2, 'N', n - 3);
  p[n - 1] = '.';
  expect_400(p, n, MSG_DESER);
  free(p);
}

/* The start of a Constant(v): class, (), NEWOBJ, {'value': ...} is left to the caller. */
static void const_obj(pb *b, int v) {
  pb_global(b, "calculator", "Constant");
  pb_op(b, ')');
  pb_op(b, 0x81);
  pb_op(b, '}');
  pb_str(b, "value");
  pb_op(b, 'K');
  pb_op(b, (uint8_t)v);
  pb_op(b, 's');
  pb_op(b, 'b');
}

/* ---- enum members by name: getattr(calculator.Associativity, 'LEFT') ---- */

/* An associativity writer: appends one value to the pickle. */
typedef void (*assoc_fn)(pb *b, const void *ctx);

/* getattr(<module.cls>, <name>) with the name's length as given (so NULs can be inside). */
typedef struct {
  const char *module, *cls, *name;
  size_t name_len;
  int args;       /* 2 normally; 1 or 3 for the wrong arity */
  int build;      /* a BUILD on the result */
} getattr_case;

static void assoc_getattr(pb *b, const void *ctx) {
  const getattr_case *g = ctx;
  pb_global(b, "builtins", "getattr");
  pb_global(b, g->module, g->cls);
  if (g->args >= 2) {
    uint8_t h[2] = {PKL_SHORT_BINUNICODE, (uint8_t)g->name_len};
    pb_put(b, h, 2);
    pb_put(b, g->name, g->name_len);
  }
  if (g->args == 3) pb_str(b, "LEFT");
  pb_op(b, g->args == 1 ? PKL_TUPLE1 : g->args == 2 ? PKL_TUPLE2 : PKL_TUPLE3);
  pb_op(b, PKL_REDUCE);
  if (g->build) {
    pb_op(b, PKL_EMPTY_DICT);
    pb_op(b, PKL_BUILD);
  }
}

static void assoc_by_value(pb *b, const void *ctx) {
  pb_global(b, "calculator", "Associativity");
  pb_op(b, PKL_BININT1);
  pb_op(b, (uint8_t)*(const int *)ctx);
  pb_op(b, PKL_TUPLE1);
  pb_op(b, PKL_REDUCE);
}

/* Any value in the associativity's place (`raw` pickle bytes, NUL-terminated). */
static void assoc_raw(pb *b, const void *ctx) { pb_put(b, ctx, strlen(ctx)); }

/* 1 <op> 2 with `op` ('+' or '**') whose associativity `assoc` writes. No memo: the machine
 * needs none. */
static void binexpr_with(pb *b, const char *op, assoc_fn assoc, const void *ctx) {
  pb_begin(b);
  pb_global(b, "calculator", "BinaryExpr");
  pb_op(b, PKL_EMPTY_TUPLE);
  pb_op(b, PKL_NEWOBJ);
  pb_op(b, PKL_EMPTY_DICT);
  pb_op(b, PKL_MARK);
  pb_str(b, "left_operand");
  const_obj(b, 1);
  pb_str(b, "operator");
  pb_global(b, "calculator", "BinaryOperator");
  pb_op(b, PKL_EMPTY_TUPLE);
  pb_op(b, PKL_NEWOBJ);
  pb_op(b, PKL_EMPTY_DICT);
  pb_op(b, PKL_MARK);
  pb_str(b, "symbol");
  pb_str(b, op);
  pb_str(b, "function");
  pb_global(b, "_operator", strcmp(op, "+") == 0 ? "add" : "pow");
  pb_str(b, "associativity");
  assoc(b, ctx);
  pb_op(b, PKL_SETITEMS);
  pb_op(b, PKL_BUILD);
  pb_str(b, "right_operand");
  const_obj(b, 2);
  pb_op(b, PKL_SETITEMS);
  pb_op(b, PKL_BUILD);
  pb_op(b, PKL_STOP);
}

static void expect_binexpr(pb *b, calc_binop op) {
  calc_tree t;
  calc_exc e;
  assert_int_equal(calc_unpickle_request(b->d, b->n, &t, &e), 0);
  assert_int_equal(t.root->kind, CALC_EXPR_BINARY);
  assert_int_equal(t.root->u.bin.op, op);
  calc_tree_free(&t);
  free(b->d);
}

static void test_enum_by_name(void **state) {
  (void)state;
  pb b;
  /* both flavours of both members, each with the operator it belongs to */
  static const getattr_case left = {"calculator", "Associativity", "LEFT", 4, 2, 0};
  static const getattr_case right = {"calculator", "Associativity", "RIGHT", 5, 2, 0};
  static const int zero = 0, one = 1;
  binexpr_with(&b, "+", assoc_getattr, &left);
  expect_binexpr(&b, CALC_BIN_ADD);
  binexpr_with(&b, "**", assoc_getattr, &right);
  expect_binexpr(&b, CALC_BIN_POW);
  binexpr_with(&b, "+", assoc_by_value, &zero);
  expect_binexpr(&b, CALC_BIN_ADD);
  binexpr_with(&b, "**", assoc_by_value, &one);
  expect_binexpr(&b, CALC_BIN_POW);
  /* a member, but not the operator's: not the reference's graph, as Associativity(1) for + */
  binexpr_with(&b, "+", assoc_getattr, &right);
  expect_400_pb(&b, MSG_NOTEXPR);
  binexpr_with(&b, "**", assoc_getattr, &left);
  expect_400_pb(&b, MSG_NOTEXPR);

  /* Hostile getattrs in the same place: each is refused like a refused global. */
  static const getattr_case hostile[] = {
    {"calculator", "Associativity", "MIDDLE", 6, 2, 0},      /* not a member */
    {"calculator", "Associativity", "left", 4, 2, 0},        /* names are exact */
    {"calculator", "Associativity", "LEFTX", 5, 2, 0},
    {"calculator", "Associativity", "LEF", 3, 2, 0},
    {"calculator", "Associativity", "", 0, 2, 0},
    {"calculator", "Associativity", "LEFT\0x", 6, 2, 0},     /* a NUL inside */
    {"calculator", "Associativity", "__class__", 9, 2, 0},   /* attributes that are not members */
    {"calculator", "Associativity", "_member_map_", 12, 2, 0},
    {"calculator", "Associativity", "__reduce_ex__", 13, 2, 0},
    {"calculator", "Associativity", "LEFT", 4, 1, 0},        /* getattr(cls) */
    {"calculator", "Associativity", "LEFT", 4, 3, 0},        /* getattr(cls, name, default) */
    {"calculator", "Associativity", "LEFT", 4, 2, 1},        /* BUILD on the member */
    {"calculator", "Constant", "LEFT", 4, 2, 0},             /* allowlisted, but not an enum */
    {"calculator", "BinaryOperator", "RIGHT", 5, 2, 0},
    {"builtins", "getattr", "LEFT", 4, 2, 0},
    {"random", "Random", "uniform", 7, 2, 0},                /* the class, not an instance */
    {"random", "Random", "LEFT", 4, 2, 0},
    {"_operator", "add", "__globals__", 11, 2, 0},
  };
  for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
    binexpr_with(&b, "+", assoc_getattr, &hostile[i]);
    expect_400_pb(&b, MSG_DESER);
  }
  /* The class must be the global itself, the name a str. */
  const char *raw[] = {
    /* getattr('calculator.Associativity', 'LEFT') */
    "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93" "\x8c\x18" "calculator.Associativity" "\x8c\x04" "LEFT" "\x86" "R",
    /* getattr(Associativity, 0) */
    "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93" "\x8c\x0a" "calculator" "\x8c\x0d" "Associativity" "\x93" "K\x01" "\x86" "R",
    /* getattr(getattr(Associativity, 'LEFT'), 'RIGHT') */
    "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93" "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93"
    "\x8c\x0a" "calculator" "\x8c\x0d" "Associativity" "\x93" "\x8c\x04" "LEFT" "\x86" "R" "\x8c\x05" "RIGHT" "\x86" "R",
    /* getattr(random.Random(), 'seed') */
    "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93" "\x8c\x06" "random" "\x8c\x06" "Random" "\x93" ")R"
    "\x8c\x04" "seed" "\x86" "R",
    /* getattr(os.system, 'x'): the global itself is refused first */
    "\x8c\x08" "builtins" "\x8c\x07" "getattr" "\x93" "\x8c\x02" "os" "\x8c\x06" "system" "\x93" "\x8c\x01" "x" "\x86" "R",
  };
  for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
    binexpr_with(&b, "+", assoc_raw, raw[i]);
    expect_400_pb(&b, MSG_DESER);
  }
  /* A lone member is a pickle but not an expression; Associativity(7) is not a member. */
  pb_begin(&b);
  assoc_getattr(&b, &left);
  pb_op(&b, PKL_STOP);
  expect_400_pb(&b, MSG_NOTEXPR);
  static const int seven = 7;
  binexpr_with(&b, "+", assoc_by_value, &seven);
  expect_400_pb(&b, MSG_NOTEXPR);
}

/* Protocols 0 and 2 as CPython 3.11.2 writes them (GLOBAL c__builtin__ getattr, MARK ...
 * TUPLE): pickle.dumps(1 + 2 ** 3, protocol=N) of calculator-like classes with an Enum. */
static void test_enum_by_name_old_protocols(void **state) {
  (void)state;
  static const char p0[] =
      "ccopy_reg\n_reconstructor\np0\n(ccalculator\nBinaryExpr\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n"
      "(dp5\nVleft_operand\np6\ng0\n(ccalculator\nConstant\np7\ng2\nNtp8\nRp9\n(dp10\nVvalue\np11\nI1\nsbs"
      "Voperator\np12\ng0\n(ccalculator\nBinaryOperator\np13\ng2\nNtp14\nRp15\n(dp16\nVsymbol\np17\nV+\np18\n"
      "sVfunction\np19\nc_operator\nadd\np20\nsVassociativity\np21\nc__builtin__\ngetattr\np22\n"
      "(ccalculator\nAssociativity\np23\nVLEFT\np24\ntp25\nRp26\nsbsVright_operand\np27\ng0\n(g1\ng2\nNtp28\n"
      "Rp29\n(dp30\ng6\ng0\n(g7\ng2\nNtp31\nRp32\n(dp33\ng11\nI2\nsbsg12\ng0\n(g13\ng2\nNtp34\nRp35\n(dp36\n"
      "g17\nV**\np37\nsg19\nc_operator\npow\np38\nsg21\ng22\n(g23\nVRIGHT\np39\ntp40\nRp41\nsbsg27\ng0\n(g7\n"
      "g2\nNtp42\nRp43\n(dp44\ng11\nI3\nsbsbsb.";
  static const char p2[] =
      "\x80\x02" "ccalculator\nBinaryExpr\nq\x00)\x81q\x01}q\x02(X\x0c\x00\x00\x00left_operandq\x03"
      "ccalculator\nConstant\nq\x04)\x81q\x05}q\x06X\x05\x00\x00\x00valueq\x07K\x01sbX\x08\x00\x00\x00"
      "operatorq\x08" "ccalculator\nBinaryOperator\nq\x09)\x81q\x0a}q\x0b(X\x06\x00\x00\x00symbolq\x0c"
      "X\x01\x00\x00\x00+q\x0dX\x08\x00\x00\x00" "functionq\x0e" "c_operator\nadd\nq\x0fX\x0d\x00\x00\x00"
      "associativityq\x10" "c__builtin__\ngetattr\nq\x11" "ccalculator\nAssociativity\nq\x12"
      "X\x04\x00\x00\x00LEFTq\x13\x86q\x14Rq\x15ubX\x0d\x00\x00\x00right_operandq\x16h\x00)\x81q\x17}q\x18"
      "(h\x03h\x04)\x81q\x19}q\x1ah\x07K\x02sbh\x08h\x09)\x81q\x1b}q\x1c(h\x0cX\x02\x00\x00\x00**q\x1d"
      "h\x0e" "c_operator\npow\nq\x1eh\x10h\x11h\x12X\x05\x00\x00\x00RIGHTq\x1f\x86q Rq!ubh\x16h\x04)\x81q\""
      "}q#h\x07K\x03sbubub.";
  const struct {
    const char *p;
    size_t n;
  } cases[] = {{p0, sizeof p0 - 1}, {p2, sizeof p2 - 1}};
  for (size_t i = 0; i < 2; i++) {
    calc_tree t;
    calc_exc e;
    assert_int_equal(calc_unpickle_request((const uint8_t *)cases[i].p, cases[i].n, &t, &e), 0);
    assert_int_equal(t.root->u.bin.op, CALC_BIN_ADD);
    assert_int_equal(t.root->u.bin.right->u.bin.op, CALC_BIN_POW);
    calc_tree_free(&t);
  }
  /* The text forms of hostile getattrs are refused the same way. */
  expect_text("c__builtin__\ngetattr\n(ccalculator\nAssociativity\nVMIDDLE\ntR.", MSG_DESER);
  expect_text("c__builtin__\ngetattr\n(c__builtin__\ngetattr\nV__globals__\ntR.", MSG_DESER);
  expect_text("c__builtin__\ngetattr\n(ccalculator\nAssociativity\nVLEFT\ntR.", MSG_NOTEXPR);
}

/* A max(...) whose args list holds the memoized value at index `mi` `count` times. */
static void call_args_of(pb *b, uint32_t mi, int count) {
  pb_global(b, "calculator", "FunctionCallExpr");
  pb_op(b, ')');
  pb_op(b, 0x81);
  pb_op(b, '}');
  pb_op(b, '(');
  pb_str(b, "function");
  pb_global(b, "calculator", "Function");
  pb_op(b, ')');
  pb_op(b, 0x81);
  pb_op(b, '}');
  pb_op(b, '(');
  pb_str(b, "name");
  pb_str(b, "max");
  pb_str(b, "function");
  pb_global(b, "builtins", "max");
  pb_op(b, 'u');
  pb_op(b, 'b');
  pb_str(b, "args");
  pb_op(b, ']');
  pb_op(b, '(');
  for (int i = 0; i < count; i++) pb_u32(b, 'j', mi);
  pb_op(b, 'e');
  pb_op(b, 'u');
  pb_op(b, 'b');
}

/* Billion laughs: each level is max(prev, prev, ... x10) through the memo. */
static void test_billion_laughs(void **state) {
  (void)state;
  pb b;
  pb_begin(&b);
  const_obj(&b, 7);
  uint32_t memo = 0;
  pb_op(&b, 0x94); /* memo 0: the Constant */
  for (int level = 0; level < 9; level++) {
    call_args_of(&b, memo, 10);
    pb_op(&b, 0x94);
    memo++;
    /* the calls above also memoized nothing else: only our explicit MEMOIZEs count */
  }
  pb_op(&b, '.');
  expect_400_pb(&b, "Expression too large (limit 20000 nodes)");

  /* One call over the arguments' limit, far under the nodes': the 400 names the limit passed. */
  pb_begin(&b);
  const_obj(&b, 7);
  pb_op(&b, 0x94);
  call_args_of(&b, 0, CALC_MAX_ARGS + 1);
  pb_op(&b, '.');
  expect_400_pb(&b, "Expression has too many arguments (limit 1000 per call)");
  pb_begin(&b);
  const_obj(&b, 7);
  pb_op(&b, 0x94);
  call_args_of(&b, 0, CALC_MAX_ARGS);
  pb_op(&b, '.');
  calc_tree at_limit;
  calc_exc no_exc;
  assert_int_equal(calc_unpickle_request(b.d, b.n, &at_limit, &no_exc), 0);
  assert_int_equal(at_limit.root->u.call.argc, CALC_MAX_ARGS);
  calc_tree_free(&at_limit);
  free(b.d);

  /* The same in a response: lists of lists, printed through repr. */
  pb_begin(&b);
  pb_op(&b, ']');
  pb_op(&b, 0x94);
  for (uint32_t level = 0; level < 30; level++) {
    pb_op(&b, ']');
    pb_op(&b, 0x94);
    pb_op(&b, '(');
    for (int i = 0; i < 10; i++) pb_u32(&b, 'j', level);
    pb_op(&b, 'e');
  }
  pb_op(&b, '.');
  calc_pyobj *o = NULL;
  calc_exc e;
  assert_int_equal(calc_unpickle_response(b.d, b.n, &o, &e), -1);
  assert_null(o);
  free(b.d);

  /* A 40 KB str memoized once and named as the module of 2000 STACK_GLOBALs in a response:
   * each global would copy it (80 MB from 52 KB); names over 256 bytes are refused at once. */
  pb_begin(&b);
  pb_u32(&b, 'X', 40000);
  char *name = malloc(40000);
  memset(name, 'm', 40000);
  pb_put(&b, name, 40000);
  free(name);
  pb_op(&b, 0x94);
  pb_op(&b, '(');
  for (int i = 0; i < 2000; i++) {  /* BINGET 0, SHORT_BINUNICODE 'x', STACK_GLOBAL */
    static const uint8_t g[] = {'h', 0, 0x8c, 1, 'x', 0x93};
    pb_put(&b, g, sizeof g);
  }
  pb_op(&b, 'l');
  pb_op(&b, '.');
  pkl_vm *vm;
  pkl_val *top;
  assert_int_equal(pkl_run(b.d, b.n, PKL_MODE_RESPONSE, &vm, &top), CALC_ERR_INVALID);
  pkl_vm_free(vm);
  free(b.d);

  /* One big int Constant shared 10 times through the memo: its bytes count each time. */
  pb_begin(&b);
  pb_global(&b, "calculator", "Constant");
  pb_op(&b, ')');
  pb_op(&b, 0x81);
  pb_op(&b, '}');
  pb_str(&b, "value");
  pb_u32(&b, 0x8b, 12000);
  uint8_t *big = calloc(12000, 1);
  big[11999] = 0x40;
  pb_put(&b, big, 12000);
  free(big);
  pb_op(&b, 's');
  pb_op(&b, 'b');
  pb_op(&b, 0x94);
  call_args_of(&b, 0, 10);
  pb_op(&b, '.');
  expect_400_pb(&b, "Expression too large (limit 20000 nodes)");

  /* A 60000-byte str referenced 2000 times by a response list. */
  pb_begin(&b);
  pb_u32(&b, 'X', 60000);
  char *s = malloc(60000);
  memset(s, 'a', 60000);
  pb_put(&b, s, 60000);
  free(s);
  pb_op(&b, 0x94);
  pb_op(&b, ']');
  pb_op(&b, '(');
  for (int i = 0; i < 2000; i++) {
    pb_op(&b, 'h');
    pb_op(&b, 0);
  }
  pb_op(&b, 'e');
  pb_op(&b, '.');
  assert_int_equal(calc_unpickle_response(b.d, b.n, &o, &e), -1);
  free(b.d);

  /* A dict key nested 30000 tuples deep. */
  pb_begin(&b);
  pb_op(&b, '}');
  pb_op(&b, 'N');
  for (int i = 0; i < 30000; i++) pb_op(&b, 0x85);
  pb_op(&b, 'N');
  pb_op(&b, 's');
  pb_op(&b, '.');
  assert_int_equal(calc_unpickle_response(b.d, b.n, &o, &e), -1);
  free(b.d);

  /* A list containing itself. */
  static const uint8_t self[] = {0x80, 0x04, ']', 0x94, 'h', 0, 'a', '.'};
  assert_int_equal(calc_unpickle_response(self, sizeof self, &o, &e), -1);
}

/* Deep nesting: unary minus 10000 deep, and 60000 nested empty lists. */
/* {t: 1} where t = (u, u, u), u = (v, v, v), ... levels deep through the memo: a few hundred
 * bytes, 3^levels paths. */
static void shared_tuple_key(pb *b, uint32_t levels) {
  pb_begin(b);
  pb_op(b, ')');
  pb_op(b, 0x94);
  for (uint32_t i = 0; i < levels; i++) {
    for (int k = 0; k < 3; k++) pb_u32(b, 'j', i);
    pb_op(b, 0x87); /* TUPLE3 */
    pb_op(b, 0x94);
  }
  pb_op(b, '}');
  pb_u32(b, 'j', levels);
  pb_op(b, 'K');
  pb_op(b, 1);
  pb_op(b, 's');
  pb_op(b, '.');
}

static void test_shared_tuple_key(void **state) {
  (void)state;
  pb b;
  /* 40 levels: refused at once by both decoders (its hashability check is bounded). */
  shared_tuple_key(&b, 40);
  expect_400_pb(&b, MSG_DESER);
  /* 5 levels (364 values to visit) is an ordinary key: the response decoder takes the dict. */
  shared_tuple_key(&b, 5);
  calc_pyobj *o = NULL;
  calc_exc e;
  memset(&e, 0, sizeof e);
  assert_int_equal(calc_unpickle_response(b.d, b.n, &o, &e), 0);
  assert_int_equal(o->kind, CALC_PY_DICT);
  calc_pyobj_free(o);
  free(b.d);
}

static void test_deep(void **state) {
  (void)state;
  pb b;
  pb_begin(&b);
  /* -(-(-(...Constant...))) written as CPython would: outer object first. */
  const int depth = 10000;
  for (int i = 0; i < depth; i++) {
    pb_global(&b, "calculator", "UnaryExpr");
    pb_op(&b, ')');
    pb_op(&b, 0x81);
    pb_op(&b, '}');
    pb_op(&b, '(');
    pb_str(&b, "operator");
    pb_global(&b, "calculator", "UnaryOperator");
    pb_op(&b, ')');
    pb_op(&b, 0x81);
    pb_op(&b, '}');
    pb_op(&b, '(');
    pb_str(&b, "symbol");
    pb_str(&b, "-");
    pb_str(&b, "function");
    pb_global(&b, "_operator", "neg");
    pb_op(&b, 'u');
    pb_op(&b, 'b');
    pb_str(&b, "operand");
  }
  const_obj(&b, 1);
  for (int i = 0; i < depth; i++) {
    pb_op(&b, 'u');
    pb_op(&b, 'b');
  }
  pb_op(&b, '.');
  /* About 1 MB: over CALC_MAX_PAYLOAD, refused before any work. */
  expect_400(b.d, b.n, MSG_DESER);
  free(b.d);

  pb_begin(&b);
  for (int i = 0; i < CALC_MAX_DEPTH + 5; i++) {
    pb_global(&b, "calculator", "UnaryExpr");
    pb_op(&b, ')');
    pb_op(&b, 0x81);
    pb_op(&b, 0x94);
    pb_op(&b, '}');
    pb_op(&b, '(');
    pb_str(&b, "operator");
    if (i == 0) {
      pb_global(&b, "calculator", "UnaryOperator");
      pb_op(&b, ')');
      pb_op(&b, 0x81);
      pb_op(&b, '}');
      pb_op(&b, '(');
      pb_str(&b, "symbol");
      pb_str(&b, "-");
      pb_str(&b, "function");
      pb_global(&b, "_operator", "neg");
      pb_op(&b, 'u');
      pb_op(&b, 'b');
      pb_op(&b, 0x94); /* memo 1: the operator */
    } else {
      pb_op(&b, 'h');
      pb_op(&b, 1);
    }
    pb_str(&b, "operand");
  }
  const_obj(&b, 1);
  for (int i = 0; i < CALC_MAX_DEPTH + 5; i++) {
    pb_op(&b, 'u');
    pb_op(&b, 'b');
  }
  pb_op(&b, '.');
  assert_true(b.n <= CALC_MAX_PAYLOAD);
  expect_400_pb(&b, "Expression too deeply nested (limit 200 levels)");

  pb_begin(&b);
  for (int i = 0; i < 30000; i++) pb_op(&b, ']');
  for (int i = 0; i < 29999; i++) pb_op(&b, 'a');
  pb_op(&b, '.');
  expect_400_pb(&b, MSG_NOTEXPR);
}

/* A valid request of every shape: seed-like, with rand; enum members in either flavour. */
static void make_valid(calc_buf *out, int with_rand, calc_pickle_flavour flavour) {
  calc_num n;
  calc_num_init(&n);
  calc_num_set_si(&n, -123456789012L);
  calc_expr *c1 = calc_expr_const(&n);
  calc_num_clear(&n);
  calc_expr **a2 = calc_malloc(3 * sizeof *a2);
  a2[0] = c1;
  a2[1] = calc_expr_named("PI", calc_named_values[0]);
  a2[2] = calc_expr_unary(CALC_UN_NEG, calc_expr_const_float(2.5));
  calc_tree t = {0};
  t.root = calc_expr_binary(CALC_BIN_POW, calc_expr_call(CALC_FN_MAX, a2, 3), calc_expr_const_float(0.5));
  if (with_rand) {
    calc_expr **ra = calc_malloc(2 * sizeof *ra);
    ra[0] = calc_expr_const_float(1);
    ra[1] = calc_expr_const_float(2);
    t.root = calc_expr_binary(CALC_BIN_ADD, t.root, calc_expr_call(CALC_FN_RAND, ra, 2));
    t.rng = calc_calloc(1, sizeof *t.rng);
    uint32_t key[2] = {42, 7};
    calc_rng_seed_words(t.rng, key, 2);
  }
  assert_int_equal(calc_pickle_request_flavour(&t, flavour, out), 0);
  calc_tree_free(&t);
}

/* Every proper prefix of a valid payload is a 400; the whole decodes and re-encodes; in both
 * flavours of enum members. */
static void test_truncation(void **state) {
  (void)state;
  for (int r = 0; r < 4; r++) {
    calc_pickle_flavour fl = r >= 2 ? CALC_PICKLE_GETATTR : CALC_PICKLE_BY_VALUE;
    calc_buf b;
    calc_buf_init(&b, 0);
    make_valid(&b, r & 1, fl);
    calc_tree t;
    calc_exc e;
    assert_int_equal(calc_unpickle_request(b.data, b.len, &t, &e), 0);
    calc_buf c;
    calc_buf_init(&c, 0);
    assert_int_equal(calc_pickle_request_flavour(&t, fl, &c), 0);
    assert_int_equal(c.len, b.len);
    assert_memory_equal(c.data, b.data, b.len);
    calc_buf_free(&c);
    calc_tree_free(&t);
    for (size_t k = 0; k < b.len; k++) {
      /* A heap copy of exactly k bytes, so ASan catches any read past the end. */
      uint8_t *p = malloc(k ? k : 1);
      memcpy(p, b.data, k);
      expect_400(p, k, k == 0 ? MSG_NOTEXPR : NULL);
      free(p);
    }
    calc_buf_free(&b);
  }
}

/* Every single-byte corruption: no crash, no leak; an accepted result must re-encode. */
static void test_corruption(void **state) {
  (void)state;
  static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, '(', '.', 'R', 'b', 'h', 'j',
                                 'u', 'e', 's', 'a', ')', 0x81, 0x85, 0x86, 0x87, PKL_STACK_GLOBAL, 0x94, 0x95, 0x8c,
                                 'X', 'K', 'M', 'J', 0x8a, 0x8b, 'G', ']', '}', 't', 'N', 0x88};
  size_t accepted = 0, refused = 0;
  for (int k = 0; k < 4; k++) {
    int r = k & 1;
    calc_buf b;
    calc_buf_init(&b, 0);
    make_valid(&b, r, k >= 2 ? CALC_PICKLE_GETATTR : CALC_PICKLE_BY_VALUE);
    uint8_t *p = malloc(b.len);
    /* The plain payload: every position, every byte value. The rand one (4 KB, mostly the
     * Mersenne-Twister ints): every 7th position, the opcode-like values. */
    for (size_t i = 0; i < b.len; i += r ? 7 : 1) {
      for (size_t v = 0; v < (r ? sizeof vals : 256); v++) {
        uint8_t x = r ? vals[v] : (uint8_t)v;
        if (x == b.data[i]) continue;
        memcpy(p, b.data, b.len);
        p[i] = x;
        calc_tree t;
        calc_exc e;
        if (calc_unpickle_request(p, b.len, &t, &e) == 0) {
          accepted++;
          calc_buf c;
          calc_buf_init(&c, 0);
          assert_int_equal(calc_pickle_request(&t, &c), 0);
          calc_buf_free(&c);
          calc_tree_free(&t);
        } else {
          refused++;
          assert_null(t.root);
          assert_true(strcmp(e.type, "ValueError") == 0);
        }
        calc_pyobj *o = NULL;
        if (calc_unpickle_response(p, b.len, &o, &e) == 0) calc_pyobj_free(o);
      }
    }
    free(p);
    calc_buf_free(&b);
  }
  printf("single-byte corruptions: %zu accepted (still valid expressions), %zu refused\n", accepted, refused);
  assert_true(refused > 0);
}

/* ---- fail each allocation (nghttp2's failmalloc): counted first, then the i-th fails ----
 * GMP aborts on a failed allocation, so this binary leaves GMP on libc's allocator (no
 * calc_alloc_init) and the hook sees libcalc's own allocations only. */

/* One run of every codec entry point on the payloads; returns how many allocations it made. */
static long codec_run(const calc_buf *req, const uint8_t *resp, size_t resp_n) {
  failmalloc_count = 0;
  calc_tree t;
  calc_exc e;
  if (calc_unpickle_request(req->data, req->len, &t, &e) == 0) {
    calc_buf b;
    calc_buf_init(&b, 0);
    if (calc_pickle_request(&t, &b) == 0) assert_memory_equal(b.data, req->data, req->len);
    calc_buf_free(&b);
    calc_tree_free(&t);
  } else {
    assert_null(t.root);
  }
  calc_pyobj *o;
  if (calc_unpickle_response(resp, resp_n, &o, &e) == 0) {
    calc_buf b;
    calc_buf_init(&b, 0);
    calc_pyobj_repr(o, &b);
    calc_pyobj_str(o, &b);
    calc_buf_free(&b);
    calc_pyobj_free(o);
  } else {
    assert_null(o);
  }
  calc_exc x;
  calc_exc_set_errno(&x, "OverflowError", 34, "Numerical result out of range");
  calc_buf b;
  calc_buf_init(&b, 0);
  calc_pickle_exception(&x, &b);
  calc_pickle_proxy_error("CalculatorServerError", "refused", &b);
  calc_buf_free(&b);
  return failmalloc_count;
}

/* A protocol-0 request (text opcodes, GLOBAL, copyreg._reconstructor, PUT/GET), made by
 * pickle.dumps(parse('max(-1.5 % 7, 2 ** 70, PI)'), protocol=0) with tests/student. */
static const char proto0_req[] =
    "ccopy_reg\n_reconstructor\np0\n(ccalculator\nFunctionCallExpr\np1\nc__builtin__\nobjec"
    "t\np2\nNtp3\nRp4\n(dp5\nVfunction\np6\ng0\n(ccalculator\nFunction\np7\ng2\nNtp8\nRp9\n"
    "(dp10\nVname\np11\nVmax\np12\nsg6\nc__builtin__\nmax\np13\nsbsVargs\np14\n(lp15\ng0\n("
    "ccalculator\nBinaryExpr\np16\ng2\nNtp17\nRp18\n(dp19\nVleft_operand\np20\ng0\n(ccalcul"
    "ator\nUnaryExpr\np21\ng2\nNtp22\nRp23\n(dp24\nVoperator\np25\ng0\n(ccalculator\nUnaryO"
    "perator\np26\ng2\nNtp27\nRp28\n(dp29\nVsymbol\np30\nV-\np31\nsg6\nc_operator\nneg\np32"
    "\nsbsVoperand\np33\ng0\n(ccalculator\nConstant\np34\ng2\nNtp35\nRp36\n(dp37\nVvalue\np"
    "38\nF1.5\nsbsbsg25\ng0\n(ccalculator\nBinaryOperator\np39\ng2\nNtp40\nRp41\n(dp42\ng30"
    "\nV%\np43\nsg6\nc_operator\nmod\np44\nsVassociativity\np45\nccalculator\nAssociativity"
    "\np46\n(I0\ntp47\nRp48\nsbsVright_operand\np49\ng0\n(g34\ng2\nNtp50\nRp51\n(dp52\ng38"
    "\nI7\nsbsbag0\n(g16\ng2\nNtp53\nRp54\n(dp55\ng20\ng0\n(g34\ng2\nNtp56\nRp57\n(dp58\ng3"
    "8\nI2\nsbsg25\ng0\n(g39\ng2\nNtp59\nRp60\n(dp61\ng30\nV**\np62\nsg6\nc_operator\npow\n"
    "p63\nsg45\ng46\n(I1\ntp64\nRp65\nsbsg49\ng0\n(g34\ng2\nNtp66\nRp67\n(dp68\ng38\nI70\ns"
    "bsbag0\n(ccalculator\nNamedConstant\np69\ng2\nNtp70\nRp71\n(dp72\ng11\nVPI\np73\nsg38"
    "\nF3.141592653589793\nsbasb.";

/* Each allocation of decoding the protocol-0 request failed once: a clean refusal each time. */
static long old_protocol_run(void) {
  failmalloc_count = 0;
  calc_tree t;
  calc_exc e;
  if (calc_unpickle_request((const uint8_t *)proto0_req, sizeof proto0_req - 1, &t, &e) == 0) {
    assert_non_null(t.root);
    calc_tree_free(&t);
  } else {
    assert_null(t.root);
    assert_string_equal(e.type, "MemoryError");
  }
  return failmalloc_count;
}

static void test_failmalloc(void **state) {
  (void)state;
  calc_buf req;
  calc_buf_init(&req, 0);
  make_valid(&req, 1, CALC_PICKLE_BY_VALUE);
  /* (-3, ['a', "it's"]) plus an exception inside a tuple: the response decoder's shapes. */
  static const uint8_t resp[] = {0x80, 0x04, 0x4a, 0xfd, 0xff, 0xff, 0xff, 0x5d, 0x94, 0x28, 0x8c, 0x01, 'a',
                                 0x8c, 0x04, 'i', 't', '\'', 's', 0x65, 0x8c, 0x08, 'b', 'u', 'i', 'l', 't',
                                 'i', 'n', 's', 0x8c, 0x07, 'O', 'S', 'E', 'r', 'r', 'o', 'r', 0x93, 0x4b,
                                 0x02, 0x8c, 0x01, 'x', 0x86, 0x52, 0x87, 0x2e};
  calc_set_allocator(&failmalloc);
  failmalloc_fail_at = -1;
  long total = codec_run(&req, resp, sizeof resp);
  for (failmalloc_fail_at = 0; failmalloc_fail_at < total; failmalloc_fail_at++) codec_run(&req, resp, sizeof resp);
  failmalloc_fail_at = -1;
  long total0 = old_protocol_run();
  for (failmalloc_fail_at = 0; failmalloc_fail_at < total0; failmalloc_fail_at++) old_protocol_run();
  failmalloc_fail_at = -1;
  calc_set_allocator(NULL);
  calc_buf_free(&req);
  printf("failmalloc: %ld allocations, each failed once (and %ld of a protocol-0 request)\n", total, total0);
  assert_true(total0 > 10);
  assert_true(total > 10);
}

int main(void) {
  /* No calc_alloc_init(): GMP stays on libc so test_failmalloc can fail the hook's calls. */
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_os_system),
    cmocka_unit_test(test_getattr),
    cmocka_unit_test(test_nested_reduce_build),
    cmocka_unit_test(test_refused_opcodes),
    cmocka_unit_test(test_old_protocols),
    cmocka_unit_test(test_enum_by_name),
    cmocka_unit_test(test_enum_by_name_old_protocols),
    cmocka_unit_test(test_lengths),
    cmocka_unit_test(test_billion_laughs),
    cmocka_unit_test(test_shared_tuple_key),
    cmocka_unit_test(test_deep),
    cmocka_unit_test(test_truncation),
    cmocka_unit_test(test_corruption),
    cmocka_unit_test(test_failmalloc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
