/* pickle_enc.c: the payload encoder (docs/protocol.md section 2): exactly the bytes CPython 3.11's
 * pickle.dumps(obj) (protocol 4, C pickler) writes for the reference's object graphs.
 *
 * The reference graph is rebuilt on the fly from the calc_tree: every save below mirrors one
 * save() call of CPython's pickler, in the same order, so memo indexes and frame boundaries
 * come out the same. */
#include <stdio.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/pickle.h"
#include "calc/rng.h"
#include "pickle_internal.h"

/* Memo identity. CPython memoizes by object identity (id()). We only ever need to find again
 * the objects that the reference shares: attribute-name strings (interned), module-name
 * strings (one per module), one-character strings (CPython caches them: the '-' of SUB and of
 * NEG is one object), class and function globals, and the operator, function and named
 * constant singletons. Each of those gets a (namespace, text) key; everything else (nodes,
 * their dicts, the args lists, step strings, the names inside globals) is a fresh object,
 * memoized but never looked up. */
typedef enum {
  PKN_NONE, PKN_ATTR, PKN_MODULE, PKN_CHAR, PKN_GLOBAL, PKN_SINGLETON
} pkn_space;

typedef struct {
  pkn_space space;
  char key[64];
  uint32_t idx;
} pkl_memo_key;

#define PKL_ENC_MAX_KEYS 256u /* keyed objects: a few dozen at most in any reference graph */

typedef struct {
  calc_buf *out;
  size_t frame_hdr;  /* offset of the current frame's 9 header bytes, or SIZE_MAX */
  uint32_t memo_n;
  pkl_memo_key keys[PKL_ENC_MAX_KEYS];
  size_t nkeys;
  int err;
  calc_pickle_flavour flavour; /* how enum members are written */
} pkl_w;

static void w_bytes(pkl_w *w, const void *p, size_t n) {
  if (calc_buf_append(w->out, p, n) < 0) w->err = 1;
}
static void w_op(pkl_w *w, uint8_t op) { w_bytes(w, &op, 1); }

static void put_le(uint8_t *d, uint64_t v, int n) {
  for (int i = 0; i < n; i++) d[i] = (uint8_t)(v >> (8 * i));
}

static void frame_open(pkl_w *w) {
  static const uint8_t hdr[9] = {PKL_FRAME, 0, 0, 0, 0, 0, 0, 0, 0};
  w->frame_hdr = w->out->len;
  w_bytes(w, hdr, sizeof hdr);
}

/* Ends the current frame: fills its length, or drops its header when it holds fewer than
 * PKL_FRAME_MIN bytes (CPython writes no FRAME for those). */
static void frame_close(pkl_w *w) {
  if (w->err || w->frame_hdr == SIZE_MAX) return;
  size_t body = w->out->len - w->frame_hdr - 9;
  if (body < PKL_FRAME_MIN) {
    memmove(w->out->data + w->frame_hdr, w->out->data + w->frame_hdr + 9, body);
    w->out->len -= 9;
  } else {
    put_le(w->out->data + w->frame_hdr + 1, body, 8);
  }
  w->frame_hdr = SIZE_MAX;
}

/* Called where CPython's save() starts: a frame that reached the target is committed. */
static void boundary(pkl_w *w) {
  if (w->err || w->frame_hdr == SIZE_MAX) return;
  if (w->out->len - w->frame_hdr - 9 >= PKL_FRAME_TARGET) {
    frame_close(w);
    frame_open(w);
  }
}

static void w_memoize(pkl_w *w) {
  w_op(w, PKL_MEMOIZE);
  w->memo_n++;
}

static void w_get(pkl_w *w, uint32_t idx) {
  uint8_t b[5];
  if (idx < 256) {
    b[0] = PKL_BINGET;
    b[1] = (uint8_t)idx;
    w_bytes(w, b, 2);
  } else {
    b[0] = PKL_LONG_BINGET;
    put_le(b + 1, idx, 4);
    w_bytes(w, b, 5);
  }
}

/* The memo lookup: the identity rule above decides which objects carry a key. */
static pkl_memo_key *memo_find(pkl_w *w, pkn_space sp, const char *key) {
  if (sp == PKN_NONE) return NULL;
  for (size_t i = 0; i < w->nkeys; i++)
    if (w->keys[i].space == sp && strcmp(w->keys[i].key, key) == 0) return &w->keys[i];
  return NULL;
}

/* Memoizes the object just written and remembers its key. */
static void memo_put(pkl_w *w, pkn_space sp, const char *key) {
  uint32_t idx = w->memo_n;
  w_memoize(w);
  if (sp == PKN_NONE || w->nkeys == PKL_ENC_MAX_KEYS || strlen(key) >= sizeof w->keys[0].key) return;
  pkl_memo_key *k = &w->keys[w->nkeys++];
  k->space = sp;
  snprintf(k->key, sizeof k->key, "%s", key);
  k->idx = idx;
}

/* Returns 1 (and writes the BINGET) when the keyed object was already saved. */
static int memo_hit(pkl_w *w, pkn_space sp, const char *key) {
  pkl_memo_key *k = memo_find(w, sp, key);
  if (!k) return 0;
  w_get(w, k->idx);
  return 1;
}

/* save(str). One-character strings are CPython's cached singletons: always shared. */
static void save_str_n(pkl_w *w, pkn_space sp, const char *s, size_t n) {
  boundary(w);
  char key[2];
  if (sp == PKN_NONE && n == 1) {
    key[0] = s[0];
    key[1] = 0;
    sp = PKN_CHAR;
    s = key;
  }
  if (memo_hit(w, sp, s)) return;
  uint8_t h[5];
  if (n <= 0xff) {
    h[0] = PKL_SHORT_BINUNICODE;
    h[1] = (uint8_t)n;
    w_bytes(w, h, 2);
    w_bytes(w, s, n);
  } else {
    h[0] = PKL_BINUNICODE;
    put_le(h + 1, n, 4);
    if (n >= PKL_FRAME_TARGET && w->frame_hdr != SIZE_MAX) {
      /* _Framer.write_large_bytes: end the frame, write header and data unframed. */
      frame_close(w);
      w_bytes(w, h, 5);
      w_bytes(w, s, n);
      frame_open(w);
    } else {
      w_bytes(w, h, 5);
      w_bytes(w, s, n);
    }
  }
  memo_put(w, sp, s);
}
static void save_str(pkl_w *w, pkn_space sp, const char *s) { save_str_n(w, sp, s, strlen(s)); }

/* save_global: module and name strings, STACK_GLOBAL, memoized under "module.name". */
static void save_global(pkl_w *w, const char *module, const char *name) {
  boundary(w);
  char key[64];
  snprintf(key, sizeof key, "%s.%s", module, name);
  if (memo_hit(w, PKN_GLOBAL, key)) return;
  save_str(w, PKN_MODULE, module);
  save_str(w, PKN_NONE, name);
  w_op(w, PKL_STACK_GLOBAL);
  memo_put(w, PKN_GLOBAL, key);
}

/* save_long, protocol >= 2: BININT1/BININT2/BININT, else LONG1/LONG4 with CPython's
 * encode_long (little-endian two's complement, (bit_length >> 3) + 1 bytes, one redundant
 * 0xff dropped for negatives). */
static void save_int(pkl_w *w, const mpz_t z) {
  boundary(w);
  uint8_t b[5];
  if (mpz_sgn(z) >= 0 && mpz_cmp_ui(z, 0xff) <= 0) {
    b[0] = PKL_BININT1;
    b[1] = (uint8_t)mpz_get_ui(z);
    w_bytes(w, b, 2);
    return;
  }
  if (mpz_sgn(z) > 0 && mpz_cmp_ui(z, 0xffff) <= 0) {
    b[0] = PKL_BININT2;
    put_le(b + 1, mpz_get_ui(z), 2);
    w_bytes(w, b, 3);
    return;
  }
  if (mpz_cmp_si(z, -0x7fffffffL - 1) >= 0 && mpz_cmp_si(z, 0x7fffffffL) <= 0) {
    b[0] = PKL_BININT;
    put_le(b + 1, (uint32_t)(int32_t)mpz_get_si(z), 4);
    w_bytes(w, b, 5);
    return;
  }
  size_t bits = mpz_sizeinbase(z, 2);
  /* Python's bit_length of a negative is that of its magnitude. */
  size_t nbytes = (bits >> 3) + 1;
  uint8_t *d = calc_calloc(nbytes, 1);
  if (!d) {
    w->err = 1;
    return;
  }
  mpz_t t;
  mpz_init(t);
  if (mpz_sgn(z) < 0) {
    mpz_ui_pow_ui(t, 2, 8 * nbytes);
    mpz_add(t, t, z); /* 2**(8n) + z: the two's complement pattern */
  } else {
    mpz_set(t, z);
  }
  size_t cnt = 0;
  mpz_export(d, &cnt, -1, 1, 0, 0, t);
  mpz_clear(t);
  if (mpz_sgn(z) < 0 && nbytes > 1 && d[nbytes - 1] == 0xff && (d[nbytes - 2] & 0x80)) nbytes--;
  if (nbytes < 256) {
    b[0] = PKL_LONG1;
    b[1] = (uint8_t)nbytes;
    w_bytes(w, b, 2);
  } else {
    b[0] = PKL_LONG4;
    put_le(b + 1, nbytes, 4);
    w_bytes(w, b, 5);
  }
  w_bytes(w, d, nbytes);
  calc_free(d);
}

static void save_uint(pkl_w *w, unsigned long v) {
  mpz_t z;
  mpz_init_set_ui(z, v);
  save_int(w, z);
  mpz_clear(z);
}

static void save_float(pkl_w *w, double f) {
  boundary(w);
  uint64_t u;
  memcpy(&u, &f, 8);
  uint8_t b[9];
  b[0] = PKL_BINFLOAT;
  for (int i = 0; i < 8; i++) b[1 + i] = (uint8_t)(u >> (56 - 8 * i));
  w_bytes(w, b, 9);
}

static void save_num(pkl_w *w, const calc_num *n) {
  if (n->is_float)
    save_float(w, n->f);
  else
    save_int(w, n->z);
}

static void save_empty_tuple(pkl_w *w) {
  boundary(w);
  w_op(w, PKL_EMPTY_TUPLE);
}

/* The start of an object saved by NEWOBJ: save(obj) -> save_reduce(copyreg.__newobj__):
 * the class, (), NEWOBJ, memoize, then its __dict__ (EMPTY_DICT, memoized). */
static void obj_begin(pkl_w *w, const char *cls) {
  boundary(w);
  save_global(w, "calculator", cls);
  save_empty_tuple(w);
  w_op(w, PKL_NEWOBJ);
  w_memoize(w);
  boundary(w); /* save(state) */
  w_op(w, PKL_EMPTY_DICT);
  w_memoize(w);
}
/* batch_setitems: one item is SETITEM, more are MARK ... SETITEMS (all our dicts < 1000). */
static void dict_items_begin(pkl_w *w, int nitems) {
  if (nitems > 1) w_op(w, PKL_MARK);
}
static void dict_items_end(pkl_w *w, int nitems) { w_op(w, nitems > 1 ? PKL_SETITEMS : PKL_SETITEM); }
static void obj_end(pkl_w *w) { w_op(w, PKL_BUILD); }

static const char *binop_symbols[] = {"+", "-", "*", "/", "%", "**"};
static const char *binop_funcs[] = {"add", "sub", "mul", "truediv", "mod", "pow"};
static const char *unop_symbols[] = {"-", "+"};
static const char *unop_funcs[] = {"neg", "pos"};
static const char *fn_names[] = {"sin", "cos", "tan", "sqrt", "log", "max", "min", "pow", "rand"};

static void save_assoc(pkl_w *w, int right) {
  boundary(w);
  const char *key = right ? "Associativity.RIGHT" : "Associativity.LEFT";
  if (memo_hit(w, PKN_SINGLETON, key)) return;
  if (w->flavour == CALC_PICKLE_GETATTR) {
    /* 3.11.2's Enum.__reduce_ex__ -> (getattr, (Associativity, 'LEFT')); the member's name
     * is its own str object, memoized like any other. */
    save_global(w, "builtins", "getattr");
    boundary(w); /* save(args) */
    save_global(w, "calculator", "Associativity");
    save_str(w, PKN_NONE, right ? "RIGHT" : "LEFT");
    w_op(w, PKL_TUPLE2);
  } else {
    /* Enum.__reduce_ex__ -> (Associativity, (value,)) */
    save_global(w, "calculator", "Associativity");
    boundary(w);
    save_uint(w, (unsigned long)right);
    w_op(w, PKL_TUPLE1);
  }
  w_memoize(w);
  w_op(w, PKL_REDUCE);
  memo_put(w, PKN_SINGLETON, key);
}

/* A singleton (operator or function object): written in full the first time, afterwards only
 * referenced from the memo, since identity is what CPython's memo tracks. Returns false when it
 * was already written (the memo reference is out); else the object is open at its __dict__. */
static bool singleton_begin(pkl_w *w, const char *cls, const char *key) {
  boundary(w);
  if (memo_hit(w, PKN_SINGLETON, key)) return false;
  save_global(w, "calculator", cls);
  save_empty_tuple(w);
  w_op(w, PKL_NEWOBJ);
  memo_put(w, PKN_SINGLETON, key);
  boundary(w);
  w_op(w, PKL_EMPTY_DICT);
  w_memoize(w);
  return true;
}

static void save_binop(pkl_w *w, calc_binop op) {
  char key[32];
  snprintf(key, sizeof key, "BinaryOperator%d", (int)op);
  if (!singleton_begin(w, "BinaryOperator", key)) return;
  dict_items_begin(w, 3);
  save_str(w, PKN_ATTR, "symbol");
  save_str(w, PKN_NONE, binop_symbols[op]);
  save_str(w, PKN_ATTR, "function");
  save_global(w, "_operator", binop_funcs[op]);
  save_str(w, PKN_ATTR, "associativity");
  save_assoc(w, op == CALC_BIN_POW);
  dict_items_end(w, 3);
  obj_end(w);
}

static void save_unop(pkl_w *w, calc_unop op) {
  char key[32];
  snprintf(key, sizeof key, "UnaryOperator%d", (int)op);
  if (!singleton_begin(w, "UnaryOperator", key)) return;
  dict_items_begin(w, 2);
  save_str(w, PKN_ATTR, "symbol");
  save_str(w, PKN_NONE, unop_symbols[op]);
  save_str(w, PKN_ATTR, "function");
  save_global(w, "_operator", unop_funcs[op]);
  dict_items_end(w, 2);
  obj_end(w);
}

/* random.uniform, a bound method of the module's hidden random.Random:
 * method.__reduce__ -> (getattr, (instance, 'uniform')), and
 * Random.__reduce__ -> (Random, (), (VERSION 3, (625 ints), gauss_next)). */
static void save_rand_method(pkl_w *w, const calc_rng *rng) {
  boundary(w);
  if (memo_hit(w, PKN_SINGLETON, "random.uniform")) return;
  save_global(w, "builtins", "getattr");
  boundary(w); /* save(args) */
  boundary(w); /* save(instance) */
  save_global(w, "random", "Random");
  save_empty_tuple(w);
  w_op(w, PKL_REDUCE);
  w_memoize(w);
  boundary(w); /* save(state) */
  save_uint(w, 3);
  boundary(w);
  w_op(w, PKL_MARK);
  for (size_t i = 0; i < CALC_MT_N; i++) save_uint(w, rng->mt[i]);
  save_uint(w, rng->pos);
  w_op(w, PKL_TUPLE);
  w_memoize(w);
  if (rng->has_gauss)
    save_float(w, rng->gauss_next);
  else {
    boundary(w);
    w_op(w, PKL_NONE);
  }
  w_op(w, PKL_TUPLE3);
  w_memoize(w);
  w_op(w, PKL_BUILD);
  save_str(w, PKN_NONE, "uniform");
  w_op(w, PKL_TUPLE2);
  w_memoize(w);
  w_op(w, PKL_REDUCE);
  memo_put(w, PKN_SINGLETON, "random.uniform");
}

static void save_function(pkl_w *w, calc_fn fn, const calc_rng *rng) {
  char key[32];
  snprintf(key, sizeof key, "Function.%s", fn_names[fn]);
  if (!singleton_begin(w, "Function", key)) return;
  dict_items_begin(w, 2);
  save_str(w, PKN_ATTR, "name");
  save_str(w, PKN_NONE, fn_names[fn]);
  save_str(w, PKN_ATTR, "function");
  if (fn == CALC_FN_RAND) {
    if (!rng) {
      w->err = 1;
      return;
    }
    save_rand_method(w, rng);
  } else {
    save_global(w, fn <= CALC_FN_LOG ? "math" : "builtins", fn_names[fn]);
  }
  dict_items_end(w, 2);
  obj_end(w);
}

/* A list of n items: EMPTY_LIST, memoize, then the items (1 item: APPEND; more: MARK ...
 * APPENDS, PKL_BATCHSIZE at a time). `item(i)` saves item i. */
typedef void (*pkl_item_fn)(pkl_w *w, const void *ctx, size_t i);
static void save_list(pkl_w *w, size_t n, pkl_item_fn item, const void *ctx) {
  boundary(w);
  w_op(w, PKL_EMPTY_LIST);
  w_memoize(w);
  if (n == 1) {
    item(w, ctx, 0);
    w_op(w, PKL_APPEND);
    return;
  }
  /* _pickle.c's batch_list_exact: every batch of a longer list is MARK ... APPENDS, even a
   * last batch of one item (pickle.py would write APPEND there; the C pickler is the oracle). */
  for (size_t i = 0; i < n && !w->err;) {
    size_t k = n - i < PKL_BATCHSIZE ? n - i : PKL_BATCHSIZE;
    w_op(w, PKL_MARK);
    for (size_t j = 0; j < k; j++) item(w, ctx, i + j);
    w_op(w, PKL_APPENDS);
    i += k;
  }
}

static void save_expr(pkl_w *w, const calc_expr *e, const calc_rng *rng, int depth);

typedef struct {
  const calc_expr *call;
  const calc_rng *rng;
  int depth;
} pkl_args_ctx;

static void save_arg(pkl_w *w, const void *ctx, size_t i) {
  const pkl_args_ctx *c = ctx;
  save_expr(w, c->call->u.call.args[i], c->rng, c->depth);
}

static int named_index(const calc_expr *e) {
  for (int i = 0; i < 3; i++)
    if (strcmp(e->u.named.name, calc_named_names[i]) == 0 && e->u.named.value == calc_named_values[i])
      return i;
  return -1;
}

static void save_expr(pkl_w *w, const calc_expr *e, const calc_rng *rng, int depth) {
  if (w->err) return;
  if (!e || depth > CALC_MAX_DEPTH) {
    w->err = 1;
    return;
  }
  switch (e->kind) {
  case CALC_EXPR_CONST:
    obj_begin(w, "Constant");
    save_str(w, PKN_ATTR, "value");
    save_num(w, &e->u.num);
    dict_items_end(w, 1);
    obj_end(w);
    return;
  case CALC_EXPR_NAMED: {
    /* PI, TAU and E are the reference's singletons; any other name is a fresh object. */
    int ni = named_index(e);
    char key[40];
    boundary(w);
    if (ni >= 0) {
      snprintf(key, sizeof key, "NamedConstant.%s", calc_named_names[ni]);
      if (memo_hit(w, PKN_SINGLETON, key)) return;
    }
    save_global(w, "calculator", "NamedConstant");
    save_empty_tuple(w);
    w_op(w, PKL_NEWOBJ);
    if (ni >= 0)
      memo_put(w, PKN_SINGLETON, key);
    else
      w_memoize(w);
    boundary(w);
    w_op(w, PKL_EMPTY_DICT);
    w_memoize(w);
    dict_items_begin(w, 2);
    save_str(w, PKN_ATTR, "name");
    save_str(w, PKN_NONE, e->u.named.name);
    save_str(w, PKN_ATTR, "value");
    save_float(w, e->u.named.value);
    dict_items_end(w, 2);
    obj_end(w);
    return;
  }
  case CALC_EXPR_BINARY:
    obj_begin(w, "BinaryExpr");
    dict_items_begin(w, 3);
    save_str(w, PKN_ATTR, "left_operand");
    save_expr(w, e->u.bin.left, rng, depth + 1);
    save_str(w, PKN_ATTR, "operator");
    save_binop(w, e->u.bin.op);
    save_str(w, PKN_ATTR, "right_operand");
    save_expr(w, e->u.bin.right, rng, depth + 1);
    dict_items_end(w, 3);
    obj_end(w);
    return;
  case CALC_EXPR_UNARY:
    obj_begin(w, "UnaryExpr");
    dict_items_begin(w, 2);
    save_str(w, PKN_ATTR, "operator");
    save_unop(w, e->u.un.op);
    save_str(w, PKN_ATTR, "operand");
    save_expr(w, e->u.un.operand, rng, depth + 1);
    dict_items_end(w, 2);
    obj_end(w);
    return;
  case CALC_EXPR_CALL: {
    obj_begin(w, "FunctionCallExpr");
    dict_items_begin(w, 2);
    save_str(w, PKN_ATTR, "function");
    save_function(w, e->u.call.fn, rng);
    save_str(w, PKN_ATTR, "args");
    pkl_args_ctx c = {e, rng, depth + 1};
    save_list(w, e->u.call.argc, save_arg, &c);
    dict_items_end(w, 2);
    obj_end(w);
    return;
  }
  }
  w->err = 1;
}

/* pickle.dumps(): PROTO 4, framing, the object, STOP. */
static void w_begin(pkl_w *w, calc_buf *out) {
  /* Field by field: zeroing the 18 KiB key table was a tenth of a server answer; keys are
   * read only below nkeys. */
  w->out = out;
  w->frame_hdr = SIZE_MAX;
  w->memo_n = 0;
  w->nkeys = 0;
  w->err = 0;
  w->flavour = CALC_PICKLE_BY_VALUE;
  if (out->failed) w->err = 1;
  static const uint8_t proto[2] = {PKL_PROTO, 4};
  w_bytes(w, proto, 2);
  frame_open(w);
}

static int w_end(pkl_w *w, size_t start) {
  w_op(w, PKL_STOP);
  frame_close(w);
  if (w->err || w->out->failed) {
    w->out->failed = 1;
    if (w->out->len > start) w->out->len = start;
    return -1;
  }
  return 0;
}

int calc_pickle_request(const calc_tree *t, calc_buf *out) {
  return calc_pickle_request_flavour(t, CALC_PICKLE_BY_VALUE, out);
}

int calc_pickle_request_flavour(const calc_tree *t, calc_pickle_flavour flavour, calc_buf *out) {
  pkl_w w;
  size_t start = out->len;
  w_begin(&w, out);
  if (flavour != CALC_PICKLE_BY_VALUE && flavour != CALC_PICKLE_GETATTR) w.err = 1;
  w.flavour = flavour;
  save_expr(&w, t ? t->root : NULL, t ? t->rng : NULL, 0);
  return w_end(&w, start);
}

static void save_step(pkl_w *w, const void *ctx, size_t i) {
  const calc_strlist *l = ctx;
  save_str(w, PKN_NONE, l->items[i]);
}

int calc_pickle_result(const calc_num *result, const calc_strlist *steps, calc_buf *out) {
  pkl_w w;
  size_t start = out->len;
  w_begin(&w, out);
  boundary(&w);
  save_num(&w, result);
  save_list(&w, steps ? steps->n : 0, save_step, steps);
  w_op(&w, PKL_TUPLE2);
  w_memoize(&w);
  return w_end(&w, start);
}

/* builtins.<type> REDUCE args: (msg,) or (errno, msg). */
int calc_pickle_exception(const calc_exc *e, calc_buf *out) {
  pkl_w w;
  size_t start = out->len;
  w_begin(&w, out);
  boundary(&w);
  save_global(&w, "builtins", e->type);
  boundary(&w);
  if (e->has_errno) {
    mpz_t z;
    mpz_init_set_si(z, e->errnum);
    save_int(&w, z);
    mpz_clear(z);
    save_str(&w, PKN_NONE, e->msg);
    w_op(&w, PKL_TUPLE2);
  } else {
    save_str(&w, PKN_NONE, e->msg);
    w_op(&w, PKL_TUPLE1);
  }
  w_memoize(&w);
  w_op(&w, PKL_REDUCE);
  w_memoize(&w);
  return w_end(&w, start);
}

static void save_api_exc(pkl_w *w, const char *cls, const char *msg) {
  boundary(w);
  save_global(w, "api", cls);
  boundary(w);
  save_str(w, PKN_NONE, msg);
  w_op(w, PKL_TUPLE1);
  w_memoize(w);
  w_op(w, PKL_REDUCE);
  w_memoize(w);
}

int calc_pickle_api_error(const char *cls, const char *msg, calc_buf *out) {
  pkl_w w;
  size_t start = out->len;
  w_begin(&w, out);
  save_api_exc(&w, cls, msg);
  return w_end(&w, start);
}

int calc_pickle_proxy_error(const char *inner_cls, const char *inner_msg, calc_buf *out) {
  pkl_w w;
  size_t start = out->len;
  w_begin(&w, out);
  boundary(&w);
  save_global(&w, "api", "CalculatorServerError");
  boundary(&w);
  save_str(&w, PKN_NONE, "Internal proxy error");
  save_api_exc(&w, inner_cls, inner_msg);
  w_op(&w, PKL_TUPLE2);
  w_memoize(&w);
  w_op(&w, PKL_REDUCE);
  w_memoize(&w);
  return w_end(&w, start);
}
