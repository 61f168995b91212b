/* pickle_vm.c: the non-executing pickle machine both payload decoders run (the request
 * decoder, pickle_dec.c, and the response decoder, pickle_py.c).
 *
 * The machine runs CPython's unpickling opcodes over a 256-entry allowlist table, but it never
 * imports, looks up or calls anything: STACK_GLOBAL and GLOBAL yield a (module, name) pair,
 * NEWOBJ and REDUCE record the class or callable and its arguments, BUILD records the state.
 * Protocols 0-3 are read too (text arguments, GLOBAL with Python 2 module names mapped as
 * CPython's fix_imports maps them, copyreg._reconstructor(cls, object, None) taken as NEWOBJ
 * of cls); see "protocols 0-3" below. In request mode a global outside the allowlist
 * (pkl_globals) is refused on sight. Every length, index and count read from the payload is
 * checked against the remaining input and a named limit (pickle_internal.h) before anything
 * is allocated. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/pickle.h"
#include "pickle_internal.h"

const pkl_global pkl_globals[PKG_COUNT] = {
  [PKG_CONSTANT] = {"calculator", "Constant"},
  [PKG_NAMED] = {"calculator", "NamedConstant"},
  [PKG_BINEXPR] = {"calculator", "BinaryExpr"},
  [PKG_UNEXPR] = {"calculator", "UnaryExpr"},
  [PKG_CALLEXPR] = {"calculator", "FunctionCallExpr"},
  [PKG_BINOP] = {"calculator", "BinaryOperator"},
  [PKG_UNOP] = {"calculator", "UnaryOperator"},
  [PKG_FUNCTION] = {"calculator", "Function"},
  [PKG_ASSOC] = {"calculator", "Associativity"},
  [PKG_OP_ADD] = {"_operator", "add"},
  [PKG_OP_SUB] = {"_operator", "sub"},
  [PKG_OP_MUL] = {"_operator", "mul"},
  [PKG_OP_TRUEDIV] = {"_operator", "truediv"},
  [PKG_OP_MOD] = {"_operator", "mod"},
  [PKG_OP_POW] = {"_operator", "pow"},
  [PKG_OP_NEG] = {"_operator", "neg"},
  [PKG_OP_POS] = {"_operator", "pos"},
  [PKG_MATH_SIN] = {"math", "sin"},
  [PKG_MATH_COS] = {"math", "cos"},
  [PKG_MATH_TAN] = {"math", "tan"},
  [PKG_MATH_SQRT] = {"math", "sqrt"},
  [PKG_MATH_LOG] = {"math", "log"},
  [PKG_B_MAX] = {"builtins", "max"},
  [PKG_B_MIN] = {"builtins", "min"},
  [PKG_B_POW] = {"builtins", "pow"},
  [PKG_RANDOM] = {"random", "Random"},
  [PKG_GETATTR] = {"builtins", "getattr"},
  [PKG_RECONSTRUCTOR] = {"copyreg", "_reconstructor"},
  [PKG_OBJECT] = {"builtins", "object"},
};

/* calculator.Associativity: LEFT = 0, RIGHT = 1 (docs/protocol.md section 2.1). */
const pkl_enum_member pkl_enum_members[] = {
  {PKG_ASSOC, "LEFT", 0},
  {PKG_ASSOC, "RIGHT", 1},
};
const size_t pkl_enum_member_count = sizeof pkl_enum_members / sizeof *pkl_enum_members;

/* Opcode allowlist: bit 1 = allowed in requests, bit 2 = allowed in responses. The text
 * opcodes of protocols 0-3 that CPython writes for these graphs (GLOBAL, INT, LONG, FLOAT,
 * UNICODE, PUT, GET, DICT, LIST) are read in both; bytes and POP / POP_MARK only in responses.
 * Everything else (INST, OBJ, PERSID, BINPERSID, EXT1/2/4, NEWOBJ_EX, STRING, BINSTRING,
 * SHORT_BINSTRING, the protocol 5 buffers, ...) is refused. */
#define RQ 1
#define RS 2
static const uint8_t pkl_optab[256] = {
  [PKL_PROTO] = RQ | RS, [PKL_FRAME] = RQ | RS, [PKL_SHORT_BINUNICODE] = RQ | RS,
  [PKL_BINUNICODE] = RQ | RS, [PKL_MEMOIZE] = RQ | RS, [PKL_BINGET] = RQ | RS,
  [PKL_LONG_BINGET] = RQ | RS, [PKL_STACK_GLOBAL] = RQ | RS, [PKL_EMPTY_TUPLE] = RQ | RS,
  [PKL_TUPLE1] = RQ | RS, [PKL_TUPLE2] = RQ | RS, [PKL_TUPLE3] = RQ | RS, [PKL_MARK] = RQ | RS,
  [PKL_TUPLE] = RQ | RS, [PKL_NEWOBJ] = RQ | RS, [PKL_REDUCE] = RQ | RS,
  [PKL_EMPTY_DICT] = RQ | RS, [PKL_SETITEM] = RQ | RS, [PKL_SETITEMS] = RQ | RS,
  [PKL_EMPTY_LIST] = RQ | RS, [PKL_APPEND] = RQ | RS, [PKL_APPENDS] = RQ | RS,
  [PKL_BUILD] = RQ | RS, [PKL_BININT1] = RQ | RS, [PKL_BININT2] = RQ | RS,
  [PKL_BININT] = RQ | RS, [PKL_LONG1] = RQ | RS, [PKL_LONG4] = RQ | RS,
  [PKL_BINFLOAT] = RQ | RS, [PKL_NEWTRUE] = RQ | RS, [PKL_NEWFALSE] = RQ | RS,
  [PKL_NONE] = RQ | RS, [PKL_STOP] = RQ | RS,
  [PKL_BINPUT] = RQ | RS, [PKL_LONG_BINPUT] = RQ | RS, [PKL_GLOBAL] = RQ | RS,
  [PKL_INT] = RQ | RS, [PKL_LONG] = RQ | RS, [PKL_FLOAT] = RQ | RS, [PKL_UNICODE] = RQ | RS,
  [PKL_PUT] = RQ | RS, [PKL_GET] = RQ | RS, [PKL_DICT] = RQ | RS, [PKL_LIST] = RQ | RS,
  [PKL_SHORT_BINBYTES] = RS, [PKL_BINBYTES] = RS, [PKL_POP] = RS, [PKL_POP_MARK] = RS,
};

/* Values come from slabs of PKL_SLAB: a request makes about a hundred values, and one
 * allocation each was a tenth of the server's time without its memo. Values never move
 * (the stack, memo and containers point at them) and are freed all at once with the VM. */
#define PKL_SLAB 64
struct pkl_slab {
  struct pkl_slab *next;
  size_t n;
  pkl_val v[PKL_SLAB];
};

/* The values' text (str and bytes data, global names) comes from a bump arena for the same
 * reason, freed with the VM; a text longer than a chunk gets a chunk of its own. */
#define PKL_CHUNK 4096u
struct pkl_chunk {
  struct pkl_chunk *next;
  size_t used, cap;
  char data[];
};

struct pkl_vm {
  pkl_mode mode;
  const uint8_t *p, *end;  /* the unread input */
  struct pkl_slab *slabs;  /* every value made, newest slab first */
  struct pkl_chunk *text;  /* the values' text, newest chunk first */
  size_t nall;
  pkl_val **stack;
  size_t sp, capstack;
  size_t *marks;
  size_t nmarks, capmarks;
  pkl_val **memo;
  size_t capmemo, memo_len; /* memo_len: entries set, as CPython's unpickler counts them */
  int proto;               /* from PROTO; 0 without one (protocols 0 and 1) */
  int nomem;
};

/* ---- bounds-checked reading: every wire byte goes through need() ---- */
static int need(const pkl_vm *vm, size_t n) { return n <= (size_t)(vm->end - vm->p); }

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Reads an n-byte little-endian unsigned field; -1 when the input is shorter. */
static int rd_le(pkl_vm *vm, int n, uint64_t *v) {
  if (!need(vm, (size_t)n)) return -1;
  *v = get_le(vm->p, n);
  vm->p += n;
  return 0;
}

/* Grows *arr (elements of size sz) so it holds at least want, without passing limit. -1 past
 * the limit (a hostile input), -1 with vm->nomem set when memory ran out (a MemoryError). */
static int grow(pkl_vm *vm, void **arr, size_t *cap, size_t want, size_t sz, size_t limit) {
  if (want <= *cap) return 0;
  if (want > limit) return -1;
  size_t c = *cap ? *cap : 16;
  while (c < want) c *= 2;
  if (c > limit) c = limit;
  void *n = calc_realloc(*arr, c * sz);
  if (!n) return vm->nomem = 1, -1;
  *arr = n;
  *cap = c;
  return 0;
}

static pkl_val *val_new(pkl_vm *vm, pkl_kind k) {
  if (vm->nall >= PKL_MAX_VALUES) return NULL;
  struct pkl_slab *sl = vm->slabs;
  if (!sl || sl->n == PKL_SLAB) {
    if (!(sl = calc_malloc(sizeof *sl))) {
      vm->nomem = 1;
      return NULL;
    }
    sl->next = vm->slabs;
    sl->n = 0;
    vm->slabs = sl;
  }
  pkl_val *v = &sl->v[sl->n++];
  memset(v, 0, sizeof *v);
  v->kind = k;
  v->global_id = -1;
  if (k == PKV_INT) mpz_init(v->z);
  vm->nall++;
  return v;
}

/* n bytes of text space, freed with the VM; NULL (and nomem) when memory ran out. */
static char *text_alloc(pkl_vm *vm, size_t n) {
  struct pkl_chunk *c = vm->text;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > PKL_CHUNK ? n : PKL_CHUNK;
    if (!(c = calc_malloc(sizeof *c + cap))) {
      vm->nomem = 1;
      return NULL;
    }
    c->used = 0;
    c->cap = cap;
    if (cap > PKL_CHUNK && vm->text) {  /* a big one: keep filling the current chunk */
      c->next = vm->text->next;
      vm->text->next = c;
    } else {
      c->next = vm->text;
      vm->text = c;
    }
  }
  char *p = c->data + c->used;
  c->used += n;
  return p;
}

static char *text_dup(pkl_vm *vm, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = text_alloc(vm, n);
  if (p) memcpy(p, s, n);
  return p;
}

/* Releases what a value owns (the value itself belongs to its slab, its text to the arena). */
static void val_release(pkl_val *v) {
  if (v->kind == PKV_INT) mpz_clear(v->z);
  calc_free(v->items);
}

void pkl_vm_free(pkl_vm *vm) {
  if (!vm) return;
  for (struct pkl_slab *sl = vm->slabs, *next; sl; sl = next) {
    next = sl->next;
    for (size_t i = 0; i < sl->n; i++) val_release(&sl->v[i]);
    calc_free(sl);
  }
  for (struct pkl_chunk *c = vm->text, *next; c; c = next) {
    next = c->next;
    calc_free(c);
  }
  calc_free(vm->stack);
  calc_free(vm->marks);
  calc_free(vm->memo);
  calc_free(vm);
}

static int item_add(pkl_vm *vm, pkl_val *c, pkl_val *x) {
  if (grow(vm, (void **)&c->items, &c->cap, c->n + 1, sizeof *c->items, PKL_MAX_VALUES * 2) < 0)
    return -1;
  c->items[c->n++] = x;
  return 0;
}

static int push(pkl_vm *vm, pkl_val *v) {
  if (!v) return -1;
  if (grow(vm, (void **)&vm->stack, &vm->capstack, vm->sp + 1, sizeof *vm->stack, PKL_MAX_STACK) < 0)
    return -1;
  vm->stack[vm->sp++] = v;
  return 0;
}

/* The stack's fence is the innermost MARK: like CPython, a pop never crosses it. */
static size_t fence(const pkl_vm *vm) { return vm->nmarks ? vm->marks[vm->nmarks - 1] : 0; }

static pkl_val *pop(pkl_vm *vm) { return vm->sp > fence(vm) ? vm->stack[--vm->sp] : NULL; }
static pkl_val *top(const pkl_vm *vm) { return vm->sp > fence(vm) ? vm->stack[vm->sp - 1] : NULL; }

/* Pops the innermost MARK: its items are stack[*k .. sp). -1 without a MARK. */
static int pop_mark(pkl_vm *vm, size_t *k) {
  if (!vm->nmarks) return -1;
  *k = vm->marks[--vm->nmarks];
  return 0;
}

/* UTF-8 as CPython decodes pickled str ('surrogatepass': encoded surrogates allowed). */
static int utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      k = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (k > n - i - 1) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return 0;
    i += k + 1;
  }
  return 1;
}

static pkl_val *make_bytes(pkl_vm *vm, pkl_kind k, size_t n) {
  if (!need(vm, n)) return NULL;  /* the length is checked against the input first */
  if (k == PKV_STR && !utf8_ok(vm->p, n)) return NULL;
  pkl_val *v = val_new(vm, k);
  if (!v) return NULL;
  if (!(v->s = text_alloc(vm, n + 1))) return NULL;
  memcpy(v->s, vm->p, n);
  v->s[n] = 0;
  v->len = n;
  vm->p += n;
  return v;
}

/* LONG1/LONG4 payload: little-endian two's complement; bounded by CALC_MAX_INT_BITS first. */
static pkl_val *make_long(pkl_vm *vm, size_t n) {
  if (!need(vm, n) || n > CALC_MAX_INT_BITS / 8 + 1) return NULL;
  pkl_val *v = val_new(vm, PKV_INT);
  if (!v) return NULL;
  if (n) {
    mpz_import(v->z, n, -1, 1, 0, 0, vm->p);
    if (vm->p[n - 1] & 0x80) {
      mpz_t t;
      mpz_init(t);
      mpz_ui_pow_ui(t, 2, 8 * n);
      mpz_sub(v->z, v->z, t);
      mpz_clear(t);
    }
    if (mpz_sizeinbase(v->z, 2) > CALC_MAX_INT_BITS) return NULL;
  }
  vm->p += n;
  return v;
}

static int global_lookup(const char *module, const char *name) {
  for (int i = 0; i < PKG_COUNT; i++)
    if (strcmp(pkl_globals[i].module, module) == 0 && strcmp(pkl_globals[i].name, name) == 0) return i;
  return -1;
}

bool pkl_is_str(const pkl_val *v) { return v && v->kind == PKV_STR && strlen(v->s) == v->len; }

int pkl_enum_member_of(const pkl_val *v) {
  if (!v || v->kind != PKV_CALL || v->has_state || v->cls->kind != PKV_GLOBAL ||
      v->cls->global_id != PKG_GETATTR || v->args->n != 2)
    return -1;
  const pkl_val *cls = v->args->items[0], *name = v->args->items[1];
  if (cls->kind != PKV_GLOBAL || !pkl_is_str(name)) return -1;
  for (size_t i = 0; i < pkl_enum_member_count; i++)
    if ((int)pkl_enum_members[i].cls == cls->global_id && strcmp(pkl_enum_members[i].name, name->s) == 0)
      return (int)i;
  return -1;
}

/* The two getattr calls a request may hold, checked when REDUCE records them: an allowlisted
 * enum member by name, and random.uniform bound to a random.Random made by REDUCE (its state
 * is checked by the request decoder). The reference's pickle.loads would run any other getattr,
 * so, like a refused global, it is refused on sight. */
static bool getattr_allowed(const pkl_val *call) {
  if (pkl_enum_member_of(call) >= 0) return true;
  const pkl_val *args = call->args;
  return args->n == 2 && args->items[0]->kind == PKV_CALL && args->items[0]->cls->global_id == PKG_RANDOM &&
         pkl_is_str(args->items[1]) && strcmp(args->items[1]->s, "uniform") == 0;
}

/* A dict key must be hashable: no list or dict inside. Memo sharing makes a tuple a DAG whose
 * paths multiply (40 levels of t = (t, t, t) are 3^40 paths in 330 bytes; CPython's own
 * unpickler would hash them forever), so the walk is bounded by the values it visits as well
 * as by depth, and a key past either bound is refused. */
static bool hashable_walk(const pkl_val *v, unsigned depth, size_t *budget) {
  if (v->kind == PKV_LIST || v->kind == PKV_DICT || depth > PKL_MAX_HASH_DEPTH || *budget == 0) return false;
  --*budget;
  if (v->kind == PKV_TUPLE)
    for (size_t i = 0; i < v->n; i++)
      if (!hashable_walk(v->items[i], depth + 1, budget)) return false;
  return true;
}

static bool hashable(const pkl_val *v) {
  size_t budget = PKL_MAX_HASH_VALUES;
  return hashable_walk(v, 0, &budget);
}

/* d[k] = v: a str key already present is replaced, as a dict would. */
static int dict_set(pkl_vm *vm, pkl_val *d, pkl_val *k, pkl_val *v) {
  if (!hashable(k) || d->n / 2 >= PKL_MAX_DICT_ITEMS) return -1;
  if (k->kind == PKV_STR)
    for (size_t i = 0; i + 1 < d->n; i += 2)
      if (d->items[i]->kind == PKV_STR && d->items[i]->len == k->len &&
          memcmp(d->items[i]->s, k->s, k->len) == 0) {
        d->items[i + 1] = v;
        return 0;
      }
  if (item_add(vm, d, k) < 0) return -1;
  return item_add(vm, d, v);
}

static int memo_put(pkl_vm *vm, uint64_t idx, pkl_val *v) {
  if (!v || idx >= PKL_MAX_MEMO) return -1;
  size_t old = vm->capmemo;
  if (grow(vm, (void **)&vm->memo, &vm->capmemo, (size_t)idx + 1, sizeof *vm->memo, PKL_MAX_MEMO) < 0)
    return -1;
  if (vm->capmemo > old) memset(vm->memo + old, 0, (vm->capmemo - old) * sizeof *vm->memo);
  if (!vm->memo[idx]) vm->memo_len++;
  vm->memo[idx] = v;
  return 0;
}

static pkl_val *memo_get(const pkl_vm *vm, uint64_t idx) {
  return idx < vm->capmemo ? vm->memo[idx] : NULL;
}

/* ---- protocols 0-3: text arguments and GLOBAL ----
 * CPython's unpickler accepts every protocol, so a student's program may send protocol 0-3
 * pickles (pickle.dumps(x, 2), or an old habit). What their picklers write is accepted here;
 * odd spellings CPython's own picklers never produce (hex or octal INT, whitespace,
 * underscores) are refused like any malformed pickle. */

/* The text up to the next newline, at most max bytes; -1 when there is none in reach. */
static int rd_line(pkl_vm *vm, size_t max, const uint8_t **line, size_t *n) {
  size_t avail = (size_t)(vm->end - vm->p);
  if (avail > max + 1) avail = max + 1;
  const uint8_t *nl = memchr(vm->p, '\n', avail);
  if (!nl) return -1;
  *line = vm->p;
  *n = (size_t)(nl - vm->p);
  vm->p = nl + 1;
  return 0;
}

/* A decimal integer as repr(int) writes it: an optional sign, then 0s only or no leading 0. */
static bool decimal_ok(const uint8_t *s, size_t n) {
  size_t i = n > 0 && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == n || n - i > PKL_MAX_TEXT_DIGITS) return false;
  bool zeros = true;
  for (size_t j = i; j < n; j++) {
    if (s[j] < '0' || s[j] > '9') return false;
    if (s[j] != '0') zeros = false;
  }
  return zeros || s[i] != '0';
}

static pkl_val *text_int(pkl_vm *vm, const uint8_t *s, size_t n) {
  if (!decimal_ok(s, n)) return NULL;
  char tmp[PKL_MAX_TEXT_DIGITS + 2];
  size_t i = s[0] == '+' ? 1 : 0;  /* GMP takes '-' but not '+' */
  memcpy(tmp, s + i, n - i);
  tmp[n - i] = '\0';
  pkl_val *v = val_new(vm, PKV_INT);
  if (v && mpz_set_str(v->z, tmp, 10) != 0) return NULL;
  return v;
}

/* FLOAT: what PyOS_string_to_double reads whole: decimal, inf, infinity, nan; no leading
 * space, no hex, overflow refused (CPython raises OverflowError), underflow allowed. */
static pkl_val *text_float(pkl_vm *vm, const uint8_t *s, size_t n) {
  char tmp[64];
  if (n == 0 || n >= sizeof tmp) return NULL;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E' ||
          strchr("infatyINFATY", c) != NULL) || c == 0)
      return NULL;
  }
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *end;
  errno = 0;
  double d = strtod(tmp, &end);
  if (end != tmp + n || (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))) return NULL;
  pkl_val *v = val_new(vm, PKV_FLOAT);
  if (v) v->f = d;
  return v;
}

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t utf8_put(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* UNICODE: the 'raw-unicode-escape' codec, into UTF-8. Bytes are code points 0-255; a
 * backslash run of odd length followed by u or U ends in an escape of exactly 4 or 8 hex
 * digits (up to U+10FFFF), other backslashes are themselves. The output is at most twice the
 * input (a byte above 0x7f becomes two; an escape of 6 or 10 bytes at most four). */
static pkl_val *text_unicode(pkl_vm *vm, const uint8_t *s, size_t n) {
  pkl_val *v = val_new(vm, PKV_STR);
  if (!v) return NULL;
  char *o = text_alloc(vm, 2 * n + 1);
  if (!o) return NULL;
  v->s = o;
  size_t len = 0, i = 0;
  while (i < n) {
    if (s[i] != '\\') {
      len += utf8_put(o + len, s[i++]);
      continue;
    }
    size_t run = 0;
    while (i + run < n && s[i + run] == '\\') run++;
    bool esc = (run & 1) && i + run < n && (s[i + run] == 'u' || s[i + run] == 'U');
    for (size_t k = 0; k < run - (esc ? 1 : 0); k++) o[len++] = '\\';
    i += run;
    if (!esc) continue;
    size_t digits = s[i] == 'u' ? 4 : 8;
    i++;
    if (n - i < digits) return NULL;
    uint32_t cp = 0;
    for (size_t k = 0; k < digits; k++) {
      int h = hexval(s[i + k]);
      if (h < 0) return NULL;
      cp = cp << 4 | (uint32_t)h;
    }
    if (cp > 0x10ffff) return NULL;
    i += digits;
    len += utf8_put(o + len, cp);
  }
  o[len] = '\0';
  v->len = len;
  return v;
}

/* A memo index as text (PUT, GET): decimal digits only. */
static int text_index(const uint8_t *s, size_t n, uint64_t *idx) {
  if (n == 0 || n > 10) return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    x = x * 10 + (uint64_t)(s[i] - '0');
  }
  *idx = x;
  return 0;
}

/* Python 2 module names that CPython's unpickler maps for protocols 0-2 (fix_imports,
 * _compat_pickle.IMPORT_MAPPING), for the globals a request or response can name. */
static const char *py3_module(const char *m, int proto) {
  if (proto >= 3) return m;
  if (!strcmp(m, "__builtin__") || !strcmp(m, "exceptions")) return "builtins";
  if (!strcmp(m, "copy_reg")) return "copyreg";
  return m;
}

/* Pushes the global module.name (STACK_GLOBAL, GLOBAL); refused in request mode when it is
 * not in the allowlist. */
static int push_global(pkl_vm *vm, const char *module, const char *name) {
  if (strlen(module) > PKL_MAX_GLOBAL_NAME || strlen(name) > PKL_MAX_GLOBAL_NAME) return -1;
  int gid = global_lookup(module, name);
  if (vm->mode == PKL_MODE_REQUEST && gid < 0) return -1;
  pkl_val *v = val_new(vm, PKV_GLOBAL);
  if (!v) return -1;
  v->global_id = gid;
  if (!(v->s = text_dup(vm, module)) || !(v->name = text_dup(vm, name))) return -1;
  return push(vm, v);
}

/* GLOBAL: "module\nname\n", each valid UTF-8 without NUL, at most 256 bytes. */
static int load_global_text(pkl_vm *vm) {
  const uint8_t *m, *nm;
  size_t mn, nn;
  if (rd_line(vm, PKL_MAX_GLOBAL_NAME, &m, &mn) < 0 || rd_line(vm, PKL_MAX_GLOBAL_NAME, &nm, &nn) < 0)
    return -1;
  if (memchr(m, 0, mn) || memchr(nm, 0, nn) || !utf8_ok(m, mn) || !utf8_ok(nm, nn)) return -1;
  char module[PKL_MAX_GLOBAL_NAME + 1], name[PKL_MAX_GLOBAL_NAME + 1];
  memcpy(module, m, mn);
  module[mn] = '\0';
  memcpy(name, nm, nn);
  name[nn] = '\0';
  return push_global(vm, py3_module(module, vm->proto), name);
}

/* copyreg._reconstructor(cls, object, None), protocols 0 and 1's way to make an instance:
 * object.__new__(cls), the same as NEWOBJ with no arguments. */
static bool is_reconstruct(const pkl_val *f, const pkl_val *args) {
  return f->global_id == PKG_RECONSTRUCTOR && args->n == 3 && args->items[0]->kind == PKV_GLOBAL &&
         args->items[1]->kind == PKV_GLOBAL && args->items[1]->global_id == PKG_OBJECT &&
         args->items[2]->kind == PKV_NONE;
}

/* TUPLE, LIST: a container of the items above the innermost MARK, which it pops. */
static pkl_val *from_mark(pkl_vm *vm, pkl_kind kind) {
  size_t k;
  if (pop_mark(vm, &k) < 0) return NULL;
  pkl_val *v = val_new(vm, kind);
  if (!v) return NULL;
  for (size_t i = k; i < vm->sp; i++)
    if (item_add(vm, v, vm->stack[i]) < 0) return NULL;
  vm->sp = k;
  return v;
}

/* One opcode. 1 = STOP reached, 0 = go on, -1 = refuse. */
static int step(pkl_vm *vm, pkl_val **result) {
  uint64_t u;
  pkl_val *v, *a, *b;
  size_t k;
  if (!need(vm, 1)) return -1;
  uint8_t op = *vm->p++;
  if (!(pkl_optab[op] & (vm->mode == PKL_MODE_REQUEST ? RQ : RS))) return -1;
  switch (op) {
  case PKL_PROTO:
    if (rd_le(vm, 1, &u) < 0 || u > 5) return -1;
    vm->proto = (int)u;
    return 0;
  case PKL_FRAME:
    /* The frame must be wholly present; opcodes inside are read like any other. */
    if (rd_le(vm, 8, &u) < 0 || u > (uint64_t)(vm->end - vm->p)) return -1;
    return 0;
  case PKL_SHORT_BINUNICODE:
    if (rd_le(vm, 1, &u) < 0) return -1;
    return push(vm, make_bytes(vm, PKV_STR, (size_t)u));
  case PKL_BINUNICODE:
    if (rd_le(vm, 4, &u) < 0) return -1;
    return push(vm, make_bytes(vm, PKV_STR, (size_t)u));
  case PKL_SHORT_BINBYTES:
    if (rd_le(vm, 1, &u) < 0) return -1;
    return push(vm, make_bytes(vm, PKV_BYTES, (size_t)u));
  case PKL_BINBYTES:
    if (rd_le(vm, 4, &u) < 0) return -1;
    return push(vm, make_bytes(vm, PKV_BYTES, (size_t)u));
  case PKL_MEMOIZE:
    return memo_put(vm, vm->memo_len, top(vm));
  case PKL_BINPUT:
    if (rd_le(vm, 1, &u) < 0) return -1;
    return memo_put(vm, u, top(vm));
  case PKL_LONG_BINPUT:
    if (rd_le(vm, 4, &u) < 0) return -1;
    return memo_put(vm, u, top(vm));
  case PKL_BINGET:
    if (rd_le(vm, 1, &u) < 0) return -1;
    return push(vm, memo_get(vm, u));
  case PKL_LONG_BINGET:
    if (rd_le(vm, 4, &u) < 0) return -1;
    return push(vm, memo_get(vm, u));
  case PKL_STACK_GLOBAL: /* recorded, never imported */
    b = pop(vm);
    a = pop(vm);
    if (!pkl_is_str(a) || !pkl_is_str(b)) return -1;
    return push_global(vm, a->s, b->s);
  case PKL_GLOBAL:
    return load_global_text(vm);
  case PKL_EMPTY_TUPLE:
    return push(vm, val_new(vm, PKV_TUPLE));
  case PKL_TUPLE1:
  case PKL_TUPLE2:
  case PKL_TUPLE3: {
    size_t n = (size_t)(op - PKL_TUPLE1 + 1);
    if (vm->sp < fence(vm) + n) return -1;
    v = val_new(vm, PKV_TUPLE);
    if (!v) return -1;
    for (size_t i = vm->sp - n; i < vm->sp; i++)
      if (item_add(vm, v, vm->stack[i]) < 0) return -1;
    vm->sp -= n;
    return push(vm, v);
  }
  case PKL_MARK:
    if (grow(vm, (void **)&vm->marks, &vm->capmarks, vm->nmarks + 1, sizeof *vm->marks, PKL_MAX_STACK) < 0)
      return -1;
    vm->marks[vm->nmarks++] = vm->sp;
    return 0;
  case PKL_TUPLE:
    return push(vm, from_mark(vm, PKV_TUPLE));
  case PKL_POP_MARK:
    if (pop_mark(vm, &k) < 0) return -1;
    vm->sp = k;
    return 0;
  case PKL_POP:
    if (vm->sp > fence(vm))
      vm->sp--;
    else if (pop_mark(vm, &k) < 0)
      return -1;
    return 0;
  case PKL_NEWOBJ:
    /* cls.__new__(cls, *args): only recorded. Requests: calculator classes with (). */
    b = pop(vm);
    a = pop(vm);
    if (!a || !b || a->kind != PKV_GLOBAL || b->kind != PKV_TUPLE) return -1;
    if (vm->mode == PKL_MODE_REQUEST && (a->global_id < PKG_CONSTANT || a->global_id > PKG_FUNCTION || b->n))
      return -1;
    v = val_new(vm, PKV_OBJ);
    if (!v) return -1;
    v->cls = a;
    v->args = b;
    return push(vm, v);
  case PKL_REDUCE:
    /* callable(*args): only recorded, NEVER called. Requests: Associativity(n),
     * random.Random() and the two getattr shapes (getattr_allowed); the rest of their shapes
     * is checked by the request decoder. */
    b = pop(vm);
    a = pop(vm);
    if (!a || !b || a->kind != PKV_GLOBAL || b->kind != PKV_TUPLE) return -1;
    if (is_reconstruct(a, b)) {
      a = b->items[0];
      if (vm->mode == PKL_MODE_REQUEST && (a->global_id < PKG_CONSTANT || a->global_id > PKG_FUNCTION))
        return -1;
      v = val_new(vm, PKV_OBJ);
      pkl_val *none = val_new(vm, PKV_TUPLE);
      if (!v || !none) return -1;
      v->cls = a;
      v->args = none;
      return push(vm, v);
    }
    if (vm->mode == PKL_MODE_REQUEST && a->global_id != PKG_ASSOC && a->global_id != PKG_RANDOM &&
        a->global_id != PKG_GETATTR)
      return -1;
    v = val_new(vm, PKV_CALL);
    if (!v) return -1;
    v->cls = a;
    v->args = b;
    if (vm->mode == PKL_MODE_REQUEST && a->global_id == PKG_GETATTR && !getattr_allowed(v)) return -1;
    return push(vm, v);
  case PKL_BUILD:
    b = pop(vm);
    a = top(vm);
    if (!a || !b || (a->kind != PKV_OBJ && a->kind != PKV_CALL) || a->has_state) return -1;
    if (vm->mode == PKL_MODE_REQUEST) {
      if (a->kind == PKV_OBJ && b->kind != PKV_DICT) return -1;
      if (a->kind == PKV_CALL && (a->cls->global_id != PKG_RANDOM || b->kind != PKV_TUPLE)) return -1;
    }
    a->state = b;
    a->has_state = true;
    return 0;
  case PKL_EMPTY_DICT:
    return push(vm, val_new(vm, PKV_DICT));
  case PKL_SETITEM:
    b = pop(vm);
    a = pop(vm);
    v = top(vm);
    if (!a || !b || !v || v->kind != PKV_DICT) return -1;
    return dict_set(vm, v, a, b);
  case PKL_SETITEMS:
    if (pop_mark(vm, &k) < 0 || k <= fence(vm)) return -1;
    v = vm->stack[k - 1]; /* the dict under the MARK */
    if (v->kind != PKV_DICT || (vm->sp - k) % 2) return -1;
    for (size_t i = k; i < vm->sp; i += 2)
      if (dict_set(vm, v, vm->stack[i], vm->stack[i + 1]) < 0) return -1;
    vm->sp = k;
    return 0;
  case PKL_EMPTY_LIST:
    return push(vm, val_new(vm, PKV_LIST));
  case PKL_APPEND:
    b = pop(vm);
    v = top(vm);
    if (!b || !v || v->kind != PKV_LIST) return -1;
    return item_add(vm, v, b);
  case PKL_APPENDS:
    if (pop_mark(vm, &k) < 0 || k <= fence(vm)) return -1;
    v = vm->stack[k - 1]; /* the list under the MARK */
    if (v->kind != PKV_LIST) return -1;
    for (size_t i = k; i < vm->sp; i++)
      if (item_add(vm, v, vm->stack[i]) < 0) return -1;
    vm->sp = k;
    return 0;
  case PKL_BININT1:
  case PKL_BININT2:
  case PKL_BININT: {
    int n = op == PKL_BININT1 ? 1 : op == PKL_BININT2 ? 2 : 4;
    if (rd_le(vm, n, &u) < 0) return -1;
    v = val_new(vm, PKV_INT);
    if (!v) return -1;
    if (n == 4)
      mpz_set_si(v->z, (long)(int32_t)(uint32_t)u);
    else
      mpz_set_ui(v->z, (unsigned long)u);
    return push(vm, v);
  }
  case PKL_LONG1:
    if (rd_le(vm, 1, &u) < 0) return -1;
    return push(vm, make_long(vm, (size_t)u));
  case PKL_LONG4:
    if (rd_le(vm, 4, &u) < 0 || (u & 0x80000000u)) return -1;
    return push(vm, make_long(vm, (size_t)u));
  case PKL_BINFLOAT: {
    if (!need(vm, 8)) return -1;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | vm->p[i];
    vm->p += 8;
    v = val_new(vm, PKV_FLOAT);
    if (!v) return -1;
    memcpy(&v->f, &bits, 8);
    return push(vm, v);
  }
  case PKL_NEWTRUE:
  case PKL_NEWFALSE:
    v = val_new(vm, PKV_BOOL);
    if (!v) return -1;
    v->b = op == PKL_NEWTRUE;
    return push(vm, v);
  case PKL_NONE:
    return push(vm, val_new(vm, PKV_NONE));
  case PKL_INT:
  case PKL_LONG:
  case PKL_FLOAT:
  case PKL_UNICODE:
  case PKL_PUT:
  case PKL_GET: {
    const uint8_t *line;
    size_t n;
    size_t max = op == PKL_UNICODE ? (size_t)(vm->end - vm->p) : PKL_MAX_TEXT_DIGITS + 2;
    if (rd_line(vm, max, &line, &n) < 0) return -1;
    switch (op) {
    case PKL_INT:
      if (n == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {  /* True, False */
        v = val_new(vm, PKV_BOOL);
        if (!v) return -1;
        v->b = line[1] == '1';
        return push(vm, v);
      }
      return push(vm, text_int(vm, line, n));
    case PKL_LONG:
      return push(vm, text_int(vm, line, n && line[n - 1] == 'L' ? n - 1 : n));
    case PKL_FLOAT:
      return push(vm, text_float(vm, line, n));
    case PKL_UNICODE:
      return push(vm, text_unicode(vm, line, n));
    case PKL_PUT:
      return text_index(line, n, &u) < 0 ? -1 : memo_put(vm, u, top(vm));
    default: /* PKL_GET */
      return text_index(line, n, &u) < 0 ? -1 : push(vm, memo_get(vm, u));
    }
  }
  case PKL_DICT:
    if (pop_mark(vm, &k) < 0 || (vm->sp - k) % 2) return -1;
    v = val_new(vm, PKV_DICT);
    if (!v) return -1;
    for (size_t i = k; i < vm->sp; i += 2)
      if (dict_set(vm, v, vm->stack[i], vm->stack[i + 1]) < 0) return -1;
    vm->sp = k;
    return push(vm, v);
  case PKL_LIST:
    return push(vm, from_mark(vm, PKV_LIST));
  case PKL_STOP:
    v = pop(vm);
    if (!v) return -1;
    *result = v;
    return 1;
  }
  return -1;
}

calc_err pkl_run(const uint8_t *p, size_t n, pkl_mode mode, pkl_vm **out, pkl_val **result) {
  *result = NULL;
  pkl_vm *vm = calc_calloc(1, sizeof *vm);
  *out = vm;
  if (!vm) return CALC_ERR_NOMEM;
  if (n == 0 || n > PKL_MAX_INPUT) return CALC_ERR_INVALID;
  vm->mode = mode;
  vm->p = p;
  vm->end = p + n;
  for (;;) {
    int r = step(vm, result);
    if (r == 1) return CALC_OK;
    if (r < 0) return vm->nomem ? CALC_ERR_NOMEM : CALC_ERR_INVALID;
  }
}
