/* pickle_py.c: the response decoder (docs/protocol.md section 2.2) and Python's str()/repr() of what it
 * decodes, for the client's output (docs/protocol.md section 4).
 *
 * The pickle machine (pickle_vm.c, response mode) records any global and any REDUCE without
 * calling it. Here a REDUCE of builtins.complex(re, im) becomes a complex number and every other
 * REDUCE (or NEWOBJ) of a class becomes an exception object of that class with those args:
 * a response holds a result tuple or an exception, so nothing else needs a meaning. Memo
 * sharing turns into copies, bounded by PKL_MAX_PYOBJS and PKL_MAX_PYDEPTH (which also stops
 * self-referencing containers). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "calc/alloc.h"
#include "calc/pickle.h"
#include "pickle_internal.h"

typedef struct {
  size_t count;
  size_t bytes;  /* str/bytes/int bytes copied, against PKL_MAX_PYBYTES */
  const char *why;
} pkl_pyconv;

static int py_budget(pkl_pyconv *c, size_t n) {
  c->bytes += n;
  if (c->bytes <= PKL_MAX_PYBYTES) return 0;
  c->why = "response object too large";
  return -1;
}

static calc_pyobj *py_new(pkl_pyconv *c, calc_py_kind k) {
  if (++c->count > PKL_MAX_PYOBJS) {
    c->why = "response object too large";
    return NULL;
  }
  calc_pyobj *o = calc_calloc(1, sizeof *o);
  if (!o) {
    c->why = "out of memory";
    return NULL;
  }
  o->kind = k;
  calc_num_init(&o->num);
  return o;
}

void calc_pyobj_free(calc_pyobj *o) {
  if (!o) return;
  for (size_t i = 0; i < o->n; i++) calc_pyobj_free(o->items[i]);
  calc_free(o->items);
  calc_free(o->str);
  calc_free(o->module);
  calc_free(o->name);
  calc_num_clear(&o->num);
  calc_free(o);
}

static double num_as_double(const pkl_val *v, int *ok) {
  *ok = 1;
  if (v->kind == PKV_FLOAT) return v->f;
  if (v->kind == PKV_INT) return mpz_get_d(v->z);
  if (v->kind == PKV_BOOL) return v->b;
  *ok = 0;
  return 0;
}

static calc_pyobj *py_conv(pkl_pyconv *c, const pkl_val *v, unsigned depth);

static int py_items(pkl_pyconv *c, calc_pyobj *o, pkl_val *const *items, size_t n, unsigned depth) {
  if (!n) return 0;
  o->items = calc_calloc(n, sizeof *o->items);
  if (!o->items) {
    c->why = "out of memory";
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    o->items[i] = py_conv(c, items[i], depth + 1);
    if (!o->items[i]) return -1;
    o->n = i + 1;
  }
  return 0;
}

static calc_pyobj *py_conv(pkl_pyconv *c, const pkl_val *v, unsigned depth) {
  if (depth > PKL_MAX_PYDEPTH) {
    c->why = "response object nested too deeply";
    return NULL;
  }
  calc_pyobj *o = NULL;
  switch (v->kind) {
  case PKV_NONE: return py_new(c, CALC_PY_NONE);
  case PKV_BOOL:
    if ((o = py_new(c, CALC_PY_BOOL))) calc_num_set_si(&o->num, v->b);
    return o;
  case PKV_INT:
    if (py_budget(c, mpz_size(v->z) * sizeof(mp_limb_t)) < 0) return NULL;
    if ((o = py_new(c, CALC_PY_INT))) mpz_set(o->num.z, v->z);
    return o;
  case PKV_FLOAT:
    if ((o = py_new(c, CALC_PY_FLOAT))) calc_num_set_float(&o->num, v->f);
    return o;
  case PKV_STR:
  case PKV_BYTES:
    if (py_budget(c, v->len) < 0) return NULL;
    if (!(o = py_new(c, v->kind == PKV_STR ? CALC_PY_STR : CALC_PY_BYTES))) return NULL;
    o->str = calc_malloc(v->len + 1);
    if (!o->str) {
      c->why = "out of memory";
      calc_pyobj_free(o);
      return NULL;
    }
    memcpy(o->str, v->s, v->len + 1);
    o->len = v->len;
    return o;
  case PKV_TUPLE:
  case PKV_LIST:
  case PKV_DICT:
    o = py_new(c, v->kind == PKV_TUPLE ? CALC_PY_TUPLE : v->kind == PKV_LIST ? CALC_PY_LIST : CALC_PY_DICT);
    if (o && py_items(c, o, v->items, v->n, depth) < 0) {
      calc_pyobj_free(o);
      return NULL;
    }
    return o;
  case PKV_CALL:
  case PKV_OBJ: {
    const pkl_val *g = v->cls;
    if (v->kind == PKV_CALL && strcmp(g->s, "builtins") == 0 && strcmp(g->name, "complex") == 0) {
      /* builtins.complex(re[, im]) with numbers: the one value REDUCE the server sends. */
      int ok1 = 1, ok2 = 1;
      double re = 0, im = 0;
      if (v->args->n >= 1) re = num_as_double(v->args->items[0], &ok1);
      if (v->args->n == 2) im = num_as_double(v->args->items[1], &ok2);
      if (!ok1 || !ok2 || v->args->n > 2) {
        c->why = "unexpected arguments to complex";
        return NULL;
      }
      if ((o = py_new(c, CALC_PY_COMPLEX))) {
        calc_num_set_float(&o->num, re);
        o->imag = im;
      }
      return o;
    }
    if (!(o = py_new(c, CALC_PY_EXC))) return NULL;
    o->module = calc_strdup(g->s);
    o->name = calc_strdup(g->name);
    if (!o->module || !o->name) {
      c->why = "out of memory";
      calc_pyobj_free(o);
      return NULL;
    }
    if (py_items(c, o, v->args->items, v->args->n, depth) < 0) {
      calc_pyobj_free(o);
      return NULL;
    }
    return o;
  }
  case PKV_GLOBAL:
    c->why = "a bare global in a response";
    return NULL;
  }
  c->why = "unexpected object";
  return NULL;
}

int calc_unpickle_response(const uint8_t *p, size_t n, calc_pyobj **out, calc_exc *exc) {
  *out = NULL;
  pkl_vm *vm = NULL;
  pkl_val *top = NULL;
  if (n == 0) return calc_exc_set_err(exc, CALC_ERR_INVALID, "empty response payload");
  calc_err st = pkl_run(p, n, PKL_MODE_RESPONSE, &vm, &top);
  if (st != CALC_OK) {
    pkl_vm_free(vm);
    if (st == CALC_ERR_NOMEM) return calc_exc_nomem(exc, "");
    return calc_exc_set_err(exc, CALC_ERR_INVALID, "response payload could not be deserialized");
  }
  pkl_pyconv c = {0, 0, NULL};
  *out = py_conv(&c, top, 0);
  pkl_vm_free(vm);
  if (*out) return 0;
  return calc_exc_set_err(exc, CALC_ERR_INVALID, "response payload could not be decoded: %s", c.why ? c.why : "?");
}

/* ---- printing, as Python's str() and repr() ---- */

/* Decodes one UTF-8 code point at s[*i] (input was validated when unpickled). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i) {
  unsigned char ch = s[*i];
  size_t k = ch < 0x80 ? 0 : (ch & 0xe0) == 0xc0 ? 1 : (ch & 0xf0) == 0xe0 ? 2 : 3;
  uint32_t cp = k == 0 ? ch : k == 1 ? (ch & 0x1fu) : k == 2 ? (ch & 0x0fu) : (ch & 0x07u);
  for (size_t j = 1; j <= k && *i + j < n; j++) cp = (cp << 6) | (s[*i + j] & 0x3fu);
  *i += k + 1;
  return cp;
}

/* Python's str.isprintable() for one code point, as far as it matters here: controls,
 * Latin-1 and general punctuation separators/format characters, surrogates and private use
 * are not printable. */
static int py_printable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return 0;
  if ((cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) || (cp >= 0x205f && cp <= 0x206f))
    return 0;
  if (cp == 0x1680 || cp == 0x3000 || cp == 0xfeff || (cp >= 0xd800 && cp <= 0xf8ff)) return 0;
  if ((cp >= 0xfff9 && cp <= 0xfffb) || cp > 0x10ffff || (cp >= 0xf0000)) return 0;
  return 1;
}

static int repr_str(const char *s, size_t n, calc_buf *out) {
  const unsigned char *u = (const unsigned char *)s;
  int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  calc_buf_putc(out, (uint8_t)q);
  for (size_t i = 0; i < n;) {
    size_t start = i;
    uint32_t cp = utf8_next(u, n, &i);
    if (cp == (uint32_t)q || cp == '\\') {
      calc_buf_putc(out, '\\');
      calc_buf_putc(out, (uint8_t)cp);
    } else if (cp == '\t') {
      calc_buf_puts(out, "\\t");
    } else if (cp == '\n') {
      calc_buf_puts(out, "\\n");
    } else if (cp == '\r') {
      calc_buf_puts(out, "\\r");
    } else if (py_printable(cp)) {
      calc_buf_append(out, s + start, i - start);
    } else if (cp < 0x100) {
      calc_buf_printf(out, "\\x%02x", cp);
    } else if (cp < 0x10000) {
      calc_buf_printf(out, "\\u%04x", cp);
    } else {
      calc_buf_printf(out, "\\U%08x", cp);
    }
  }
  return calc_buf_putc(out, (uint8_t)q);
}

static int repr_bytes(const char *s, size_t n, calc_buf *out) {
  int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  calc_buf_putc(out, 'b');
  calc_buf_putc(out, (uint8_t)q);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == (unsigned char)q || ch == '\\') {
      calc_buf_putc(out, '\\');
      calc_buf_putc(out, ch);
    } else if (ch == '\t') {
      calc_buf_puts(out, "\\t");
    } else if (ch == '\n') {
      calc_buf_puts(out, "\\n");
    } else if (ch == '\r') {
      calc_buf_puts(out, "\\r");
    } else if (ch < 0x20 || ch >= 0x7f) {
      calc_buf_printf(out, "\\x%02x", ch);
    } else {
      calc_buf_putc(out, ch);
    }
  }
  return calc_buf_putc(out, (uint8_t)q);
}

/* repr(float) inside complex(): 'r' format without the forced '.0' ('2', not '2.0'). */
static void complex_part(double f, calc_buf *out) {
  char b[40];
  int n = calc_float_repr(f, b);
  if (n >= 2 && b[n - 2] == '.' && b[n - 1] == '0') n -= 2;
  calc_buf_append(out, b, (size_t)n);
}

static void repr_complex(const calc_pyobj *o, calc_buf *out) {
  double re = o->num.f, im = o->imag;
  if (re == 0.0 && !signbit(re)) {
    complex_part(im, out);
    calc_buf_putc(out, 'j');
    return;
  }
  calc_buf_putc(out, '(');
  complex_part(re, out);
  if (!(im < 0 || (im == 0 && signbit(im)) || (isnan(im) && signbit(im)))) calc_buf_putc(out, '+');
  else if (isnan(im)) calc_buf_putc(out, '-');
  if (isnan(im))
    calc_buf_puts(out, "nan");
  else
    complex_part(im, out);
  calc_buf_puts(out, "j)");
}

/* The OSError family: CPython's OSError(errno, strerror) even turns into the subclass the
 * errno names (OSError(111, ...) unpickles as ConnectionRefusedError). */
static const char *const oserror_names[] = {
  "OSError", "IOError", "EnvironmentError", "BlockingIOError", "ChildProcessError",
  "ConnectionError", "BrokenPipeError", "ConnectionAbortedError", "ConnectionRefusedError",
  "ConnectionResetError", "FileExistsError", "FileNotFoundError", "InterruptedError",
  "IsADirectoryError", "NotADirectoryError", "PermissionError", "ProcessLookupError",
  "TimeoutError"};

static const struct {
  int err;
  const char *name;
} errno_map[] = {
  {EAGAIN, "BlockingIOError"}, {EALREADY, "BlockingIOError"}, {EINPROGRESS, "BlockingIOError"},
  {EWOULDBLOCK, "BlockingIOError"}, {EPIPE, "BrokenPipeError"}, {ESHUTDOWN, "BrokenPipeError"},
  {ECHILD, "ChildProcessError"}, {ECONNABORTED, "ConnectionAbortedError"},
  {ECONNREFUSED, "ConnectionRefusedError"}, {ECONNRESET, "ConnectionResetError"},
  {EEXIST, "FileExistsError"}, {ENOENT, "FileNotFoundError"}, {EISDIR, "IsADirectoryError"},
  {ENOTDIR, "NotADirectoryError"}, {EINTR, "InterruptedError"}, {EACCES, "PermissionError"},
  {EPERM, "PermissionError"}, {ESRCH, "ProcessLookupError"}, {ETIMEDOUT, "TimeoutError"}};

static int is_builtin_oserror(const calc_pyobj *o) {
  if (strcmp(o->module, "builtins") != 0) return 0;
  for (size_t i = 0; i < sizeof oserror_names / sizeof *oserror_names; i++)
    if (strcmp(o->name, oserror_names[i]) == 0) return 1;
  return 0;
}

/* type(e).__name__ as Python would show it. */
static const char *exc_type_name(const calc_pyobj *o) {
  const char *dot = strrchr(o->name, '.');
  const char *name = dot ? dot + 1 : o->name;
  if (strcmp(o->module, "builtins") == 0 &&
      (strcmp(name, "OSError") == 0 || strcmp(name, "IOError") == 0 || strcmp(name, "EnvironmentError") == 0)) {
    if (o->n >= 2 && o->n <= 5 && o->items[0]->kind == CALC_PY_INT && mpz_fits_sint_p(o->items[0]->num.z)) {
      int e = (int)mpz_get_si(o->items[0]->num.z);
      for (size_t i = 0; i < sizeof errno_map / sizeof *errno_map; i++)
        if (errno_map[i].err == e) return errno_map[i].name;
    }
    return "OSError";
  }
  return name;
}

static int repr_seq(const calc_pyobj *o, const char *open, const char *close, calc_buf *out) {
  calc_buf_puts(out, open);
  for (size_t i = 0; i < o->n; i++) {
    if (i) calc_buf_puts(out, ", ");
    calc_pyobj_repr(o->items[i], out);
  }
  if (o->kind == CALC_PY_TUPLE && o->n == 1) calc_buf_putc(out, ',');
  return calc_buf_puts(out, close);
}

int calc_pyobj_repr(const calc_pyobj *o, calc_buf *out) {
  switch (o->kind) {
  case CALC_PY_NONE: return calc_buf_puts(out, "None");
  case CALC_PY_BOOL: return calc_buf_puts(out, mpz_sgn(o->num.z) ? "True" : "False");
  case CALC_PY_INT:
  case CALC_PY_FLOAT: return calc_num_str(&o->num, out);
  case CALC_PY_COMPLEX: repr_complex(o, out); return out->failed ? -1 : 0;
  case CALC_PY_STR: return repr_str(o->str, o->len, out);
  case CALC_PY_BYTES: return repr_bytes(o->str, o->len, out);
  case CALC_PY_TUPLE: return repr_seq(o, "(", ")", out);
  case CALC_PY_LIST: return repr_seq(o, "[", "]", out);
  case CALC_PY_DICT:
    calc_buf_putc(out, '{');
    for (size_t i = 0; i + 1 < o->n; i += 2) {
      if (i) calc_buf_puts(out, ", ");
      calc_pyobj_repr(o->items[i], out);
      calc_buf_puts(out, ": ");
      calc_pyobj_repr(o->items[i + 1], out);
    }
    return calc_buf_putc(out, '}');
  case CALC_PY_EXC:
    /* BaseException.__repr__: Name(repr(arg)) for one arg, else Name + repr(args). */
    calc_buf_puts(out, exc_type_name(o));
    if (o->n == 1) {
      calc_buf_putc(out, '(');
      calc_pyobj_repr(o->items[0], out);
      return calc_buf_putc(out, ')');
    }
    {
      calc_pyobj t = *o;
      t.kind = CALC_PY_TUPLE;
      /* OSError(errno, strerror, filename[, winerror, filename2]) keeps only the first two in
       * its args once constructed: repr shows those. */
      if (is_builtin_oserror(o) && o->n >= 3 && o->n <= 5) t.n = 2;
      return repr_seq(&t, "(", ")", out);
    }
  }
  return -1;
}

int calc_pyobj_str(const calc_pyobj *o, calc_buf *out) {
  switch (o->kind) {
  case CALC_PY_STR: return calc_buf_append(out, o->str, o->len);
  case CALC_PY_EXC: {
    /* OSError.__str__: [Errno N] strerror, with ': filename' and ' -> filename2'. */
    if (is_builtin_oserror(o) && o->n >= 2 && o->n <= 5) {
      calc_buf_puts(out, "[Errno ");
      calc_pyobj_str(o->items[0], out);
      calc_buf_puts(out, "] ");
      calc_pyobj_str(o->items[1], out);
      if (o->n >= 3 && o->items[2]->kind != CALC_PY_NONE) {
        calc_buf_puts(out, ": ");
        calc_pyobj_repr(o->items[2], out);
        if (o->n >= 5 && o->items[4]->kind != CALC_PY_NONE) {
          calc_buf_puts(out, " -> ");
          calc_pyobj_repr(o->items[4], out);
        }
      }
      return out->failed ? -1 : 0;
    }
    /* BaseException.__str__: '' / str(arg) / str(args); KeyError shows repr(arg). */
    if (o->n == 0) return out->failed ? -1 : 0;
    if (o->n == 1) {
      if (strcmp(o->module, "builtins") == 0 && strcmp(o->name, "KeyError") == 0)
        return calc_pyobj_repr(o->items[0], out);
      return calc_pyobj_str(o->items[0], out);
    }
    calc_pyobj t = *o;
    t.kind = CALC_PY_TUPLE;
    return repr_seq(&t, "(", ")", out);
  }
  default: return calc_pyobj_repr(o, out);
  }
}
