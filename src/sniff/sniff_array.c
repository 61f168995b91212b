/* sniff_array.c: growable record arrays that move into a huge-page reservation once large
 * (why: sniff_array.h). */
#include "sniff_array.h"

#include <string.h>
#include <sys/mman.h>

#include "calc/alloc.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it and pages fault in */
#endif
/* The commit step: one transparent huge page on x86-64 and arm64 (4 KiB base pages). */
#define STEP ((size_t)2 << 20)
#define HEAP_FIRST_CAP 256u

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static uint32_t cap_of(size_t bytes, size_t size, uint32_t max) {
  size_t n = bytes / size;
  return n > max ? max : (uint32_t)n;
}

/* Makes [committed, to) of the reservation usable and backs it with memory now, in one call
 * rather than a fault per page. */
static int commit(sniff_array *a, size_t to) {
  if (to > a->map_len) to = a->map_len;
  if (to <= a->committed) return 0;
  uint8_t *from = (uint8_t *)a->items + a->committed;
  if (mprotect(from, to - a->committed, PROT_READ | PROT_WRITE) != 0) return -1;
  (void)madvise(from, to - a->committed, MADV_POPULATE_WRITE);
  a->committed = to;
  return 0;
}

/* Moves the heap array (its first n records) into a reservation for max records. Returns 0,
 * or -1 with the array unchanged when the system refuses. */
static int move_to_reservation(sniff_array *a, uint32_t n, size_t size, uint32_t max) {
  if ((size_t)max > (SIZE_MAX - 2 * STEP) / size) return -1;
  size_t reserve = round_up((size_t)max * size, STEP);
  size_t len = reserve + STEP; /* slack to align the start to a huge page */
  uint8_t *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return -1;
  uint8_t *start = (uint8_t *)round_up((uintptr_t)p, STEP);
  if (start > p) munmap(p, (size_t)(start - p));
  if (start + reserve < p + len) munmap(start + reserve, (size_t)(p + len - (start + reserve)));
  /* A hint: where THP is off or unsupported the array is simply on 4 KiB pages. */
  (void)madvise(start, reserve, MADV_HUGEPAGE);
  sniff_array r = {.items = start, .map = start, .map_len = reserve};
  if (commit(&r, round_up(((size_t)n + 1) * size, STEP)) != 0) {
    munmap(start, reserve);
    return -1;
  }
  if (n) memcpy(start, a->items, (size_t)n * size);
  calc_free(a->items);
  r.cap = cap_of(r.committed, size, max);
  *a = r;
  return 0;
}

void *sniff_array_grow(sniff_array *a, uint32_t n, size_t size, uint32_t max) {
  if (n < a->cap) return a->items;
  if (n >= max) return NULL;
  if (a->map) {
    if (commit(a, round_up(((size_t)n + 1) * size, STEP)) != 0) return NULL;
    a->cap = cap_of(a->committed, size, max);
    return n < a->cap ? a->items : NULL;
  }
  uint32_t cap = a->cap ? a->cap : HEAP_FIRST_CAP;
  while (cap <= n) cap = cap > max / 2 ? max : cap * 2;
  if (cap > max) cap = max;
  if ((size_t)cap * size > SNIFF_ARRAY_HEAP_MAX && move_to_reservation(a, n, size, max) == 0)
    return a->items;
  void *items = calc_realloc(a->items, (size_t)cap * size);
  if (!items) return NULL;
  a->items = items;
  a->cap = cap;
  return items;
}

void sniff_array_free(sniff_array *a) {
  if (a->map) munmap(a->map, a->map_len);
  else calc_free(a->items);
  memset(a, 0, sizeof *a);
}
