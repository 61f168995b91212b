/* failmalloc.c: see failmalloc.h. */
#include "failmalloc.h"

#include <stdlib.h>

long failmalloc_fail_at = -1;
long failmalloc_count = 0;

static void *fm_malloc(size_t n, void *ud) {
  (void)ud;
  return failmalloc_count++ == failmalloc_fail_at ? NULL : malloc(n);
}
static void *fm_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return failmalloc_count++ == failmalloc_fail_at ? NULL : realloc(p, n);
}
static void fm_free(void *p, void *ud) {
  (void)ud;
  free(p);
}
const calc_allocator failmalloc = {fm_malloc, fm_realloc, fm_free, NULL};

void failmalloc_arm(long fail_at) {
  failmalloc_count = 0;
  failmalloc_fail_at = fail_at;
}
