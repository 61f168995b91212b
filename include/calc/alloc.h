/* calc/alloc.h: the single allocation hook every libcalc allocation goes through.
 *
 * Tests replace the hook to fail the i-th allocation (nghttp2's failmalloc pattern).
 * GMP is pointed at the same hook by calc_alloc_init(); GMP aborts on a failed
 * allocation, so every size handed to GMP is bounded by a named limit first (limits.h). */
#ifndef CALC_ALLOC_H
#define CALC_ALLOC_H
#include <stddef.h>

typedef struct calc_allocator {
  void *(*malloc_fn)(size_t size, void *ud);
  void *(*realloc_fn)(void *ptr, size_t size, void *ud);
  void (*free_fn)(void *ptr, void *ud);
  void *ud;
} calc_allocator;

/* Installs `a` (NULL restores the libc allocator). Not thread-safe: call before threads start. */
void calc_set_allocator(const calc_allocator *a);
/* Makes GMP allocate through the hook too. Idempotent. */
void calc_alloc_init(void);

void *calc_malloc(size_t size);          /* NULL on failure */
void *calc_calloc(size_t n, size_t size); /* NULL on failure or overflow */
void *calc_realloc(void *ptr, size_t size);
void calc_free(void *ptr);
char *calc_strdup(const char *s);
char *calc_strndup(const char *s, size_t n);

#endif
