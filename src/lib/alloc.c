/* alloc.c: the one allocation hook of libcalc (see calc/alloc.h). */
#include "calc/alloc.h"

#include <gmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(size_t size, void *ud) { (void)ud; return malloc(size); }
static void *libc_realloc(void *p, size_t size, void *ud) { (void)ud; return realloc(p, size); }
static void libc_free(void *p, void *ud) { (void)ud; free(p); }

static const calc_allocator libc_allocator = {libc_malloc, libc_realloc, libc_free, NULL};
static calc_allocator current = {libc_malloc, libc_realloc, libc_free, NULL};

void calc_set_allocator(const calc_allocator *a) { current = a ? *a : libc_allocator; }

void *calc_malloc(size_t size) { return current.malloc_fn(size ? size : 1, current.ud); }

void *calc_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  void *p = calc_malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *calc_realloc(void *ptr, size_t size) { return current.realloc_fn(ptr, size ? size : 1, current.ud); }

void calc_free(void *ptr) {
  if (ptr) current.free_fn(ptr, current.ud);
}

char *calc_strndup(const char *s, size_t n) {
  char *d = calc_malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *calc_strdup(const char *s) { return calc_strndup(s, strlen(s)); }

/* GMP has no way to report a failed allocation: it aborts. Every size we hand it is bounded
 * first (CALC_MAX_INT_BITS), so an abort here means the machine is truly out of memory. */
static void *gmp_alloc(size_t n) {
  void *p = calc_malloc(n);
  if (!p) abort();
  return p;
}
static void *gmp_realloc(void *p, size_t old, size_t n) {
  (void)old;
  void *q = calc_realloc(p, n);
  if (!q) abort();
  return q;
}
static void gmp_free(void *p, size_t n) { (void)n; calc_free(p); }

void calc_alloc_init(void) { mp_set_memory_functions(gmp_alloc, gmp_realloc, gmp_free); }
