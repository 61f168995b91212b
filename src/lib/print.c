/* print.c: the reference's stringify(e, add_brackets=True) (docs/protocol.md section 3.2), quirk included.
 *
 * Pass 1 prints every node bracketed. Pass 2 removes "unnecessary" brackets the way the
 * reference does: for each matching pair (l, r), taken in the order the closing brackets occur,
 * when l+1 opens a pair closing at r-1, the characters at positions l and r-1 OF THE CURRENT
 * STRING are deleted, with l and r being indices into the ORIGINAL string. After the first
 * deletion those indices point at shifted characters; the reference's output shows it
 * (vector brackets-shift: `-(-(1 + 2) * -(( - 4)))`) and so must ours. Pass 3 drops the outer
 * pair when position 0 opened a pair whose original close index equals the current length - 1.
 *
 * "Position k of the current string" is found with a Fenwick tree over the surviving
 * characters, so a printout costs O(n log n) even for the largest trees instead of the
 * O(n^2) of deleting by copying. */
#include <string.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/limits.h"

/* Printing recurses over the tree; producers bound its depth (CALC_MAX_DEPTH), we re-check. */
#define PRINT_MAX_DEPTH (CALC_MAX_DEPTH + 8)

/* A constant's text, formatted once and kept with the node (expr.h); the node is the
 * caller's, allocated and never shared between threads, so the cache is written through a
 * cast. Where the copy cannot be kept the number is formatted each time, as before. */
static int print_const(const calc_expr *e, calc_buf *out) {
  if (e->text) return calc_buf_append(out, e->text, e->text_len);
  size_t at = out->len;
  if (calc_num_str(&e->u.num, out) < 0 || out->failed) return -1;
  size_t n = out->len - at;
  char *t = calc_malloc(n ? n : 1);
  if (t) {
    memcpy(t, out->data + at, n);
    ((calc_expr *)e)->text = t;
    ((calc_expr *)e)->text_len = n;
  }
  return 0;
}

static int print_full(const calc_expr *e, calc_buf *out, int depth) {
  if (depth > PRINT_MAX_DEPTH) return -1;
  switch (e->kind) {
    case CALC_EXPR_CONST: return print_const(e, out);
    case CALC_EXPR_NAMED: return calc_buf_puts(out, e->u.named.name);
    case CALC_EXPR_BINARY:
      if (calc_buf_putc(out, '(') < 0 || print_full(e->u.bin.left, out, depth + 1) < 0 ||
          calc_buf_putc(out, ' ') < 0 || calc_buf_puts(out, calc_binop_symbol(e->u.bin.op)) < 0 ||
          calc_buf_putc(out, ' ') < 0 || print_full(e->u.bin.right, out, depth + 1) < 0)
        return -1;
      return calc_buf_putc(out, ')');
    case CALC_EXPR_UNARY:
      if (calc_buf_puts(out, calc_unop_symbol(e->u.un.op)) < 0 || calc_buf_putc(out, '(') < 0 ||
          print_full(e->u.un.operand, out, depth + 1) < 0)
        return -1;
      return calc_buf_putc(out, ')');
    case CALC_EXPR_CALL:
      if (calc_buf_puts(out, calc_fn_name(e->u.call.fn)) < 0 || calc_buf_putc(out, '(') < 0) return -1;
      for (size_t i = 0; i < e->u.call.argc; i++) {
        if (i > 0 && calc_buf_puts(out, ", ") < 0) return -1;
        if (print_full(e->u.call.args[i], out, depth + 1) < 0) return -1;
      }
      return calc_buf_putc(out, ')');
  }
  return -1;
}

/* Fenwick tree over n slots holding 1 (alive) or 0 (deleted). */
typedef struct {
  size_t n;
  size_t *t; /* 1-based */
} fenwick;

static void fw_add(fenwick *f, size_t i, long d) {
  for (i++; i <= f->n; i += i & (~i + 1)) f->t[i] = (size_t)((long)f->t[i] + d);
}

/* Original index of the k-th (0-based) alive slot; k < number alive. */
static size_t fw_kth(const fenwick *f, size_t k) {
  size_t pos = 0, step = 1;
  while (step * 2 <= f->n) step *= 2;
  size_t rem = k + 1;
  for (; step; step /= 2) {
    if (pos + step <= f->n && f->t[pos + step] < rem) {
      pos += step;
      rem -= f->t[pos];
    }
  }
  return pos; /* 1-based pos+1 is the slot, i.e. 0-based pos */
}

/* Applies passes 2 and 3 to s[0..n), writing the survivors to out. */
static int remove_brackets(const char *s, size_t n, calc_buf *out) {
  int rc = -1;
  /* One allocation for the five work arrays (this runs once per step of every answer). */
  size_t m = n ? n : 1;
  size_t *mem = calc_malloc((4 * m + 1) * sizeof *mem + m);
  if (!mem) return -1;
  size_t *match = mem;                          /* open -> close, or SIZE_MAX */
  size_t *order = mem + m;                      /* opens in closing order */
  size_t *stack = mem + 2 * m;
  fenwick fw = {n, mem + 3 * m};                /* n + 1 slots, 1-based */
  memset(fw.t, 0, (n + 1) * sizeof *fw.t);
  unsigned char *alive = (unsigned char *)(mem + 4 * m + 1);
  size_t npairs = 0, sp = 0;
  for (size_t i = 0; i < n; i++) {
    match[i] = SIZE_MAX;
    alive[i] = 1;
    if (s[i] == '(') {
      stack[sp++] = i;
    } else if (s[i] == ')' && sp > 0) {
      size_t l = stack[--sp];
      match[l] = i;
      order[npairs++] = l;
    }
  }
  /* Linear Fenwick build: every slot starts alive. */
  for (size_t i = 1; i <= n; i++) {
    fw.t[i] += 1;
    size_t parent = i + (i & (~i + 1));
    if (parent <= n) fw.t[parent] += fw.t[i];
  }
  size_t cur = n;
  for (size_t k = 0; k < npairs; k++) {
    size_t l = order[k], r = match[l];
    if (l + 1 < n && match[l + 1] != SIZE_MAX && match[l + 1] == r - 1) {
      /* Python: c = c[:l] + c[l+1:r-1] + c[r:], both indices into the current string. */
      size_t a = l < cur ? fw_kth(&fw, l) : SIZE_MAX;
      size_t b = r - 1 < cur ? fw_kth(&fw, r - 1) : SIZE_MAX;
      if (a != SIZE_MAX) {
        alive[a] = 0;
        fw_add(&fw, a, -1);
        cur--;
      }
      if (b != SIZE_MAX) {
        alive[b] = 0;
        fw_add(&fw, b, -1);
        cur--;
      }
    }
  }
  size_t first = SIZE_MAX, last = SIZE_MAX;
  if (n > 0 && match[0] != SIZE_MAX && cur > 0 && match[0] == cur - 1) {
    first = fw_kth(&fw, 0);
    last = fw_kth(&fw, cur - 1);
  }
  if (calc_buf_reserve(out, cur) < 0) goto done;
  for (size_t i = 0; i < n; i++) {
    if (alive[i] && i != first && i != last) out->data[out->len++] = (uint8_t)s[i];
  }
  rc = 0;
done:
  calc_free(mem);
  return rc;
}

int calc_expr_print_limited(const calc_expr *e, calc_buf *out, size_t max_len) {
  calc_buf full;
  /* Brackets are at most 2 bytes per node, all removable: the bracketed text can pass the
   * final limit by that much. */
  calc_buf_init(&full, max_len ? max_len + 2 * (size_t)CALC_MAX_NODES + 64 : 0);
  calc_buf_reserve(&full, 512);  /* most printouts fit: no doubling series from 64 bytes */
  int rc = -1;
  size_t before = out->len;
  if (print_full(e, &full, 0) == 0 && !full.failed &&
      remove_brackets((const char *)full.data, full.len, out) == 0) {
    rc = (max_len && out->len - before > max_len) ? -1 : 0;
  } else if (full.failed != CALC_ERR_LIMIT && !out->failed) {
    /* the caller tells this from a printout over max_len, or over out's own limit (which
     * remove_brackets has recorded in out->failed) */
    out->failed = CALC_ERR_NOMEM;
  }
  calc_buf_free(&full);
  return rc;
}

int calc_expr_print(const calc_expr *e, calc_buf *out) { return calc_expr_print_limited(e, out, 0); }
