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

void *sniff_reserve(size_t bytes) {
  if (bytes > SIZE_MAX - 2 * STEP) return NULL;
  size_t reserve = round_up(bytes, STEP);
  size_t len = reserve + STEP; /* slack to align the start to a huge page */
  uint8_t *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return NULL;
  uint8_t *start = (uint8_t *)round_up((uintptr_t)p, STEP);
  if (start > p) munmap(p, (size_t)(start - p));
  if (start + reserve < p + len) munmap(start + reserve, (size_t)(p + len - (start + reserve)));
  /* A hint: where THP is off or unsupported the memory is simply in 4 KiB pages. */
  (void)madvise(start, reserve, MADV_HUGEPAGE);
  return start;
}

int sniff_commit(void *base, size_t from, size_t to) {
  if (to <= from) return 0;
  uint8_t *p = (uint8_t *)base + from;
  if (mprotect(p, to - from, PROT_READ | PROT_WRITE) != 0) return -1;
  (void)madvise(p, to - from, MADV_POPULATE_WRITE);
  return 0;
}

void sniff_unreserve(void *base, size_t bytes) {
  if (base) munmap(base, round_up(bytes, STEP));
}

/* Commits the reservation up to byte `to` (rounded to a step, at most the whole of it). */
static int commit(sniff_array *a, size_t to) {
  to = round_up(to, STEP);
  if (to > a->map_len) to = a->map_len;
  if (to <= a->committed) return 0;
  if (sniff_commit(a->items, a->committed, to) != 0) return -1;
  a->committed = to;
  return 0;
}

/* Moves the heap array (its first n records) into a reservation for max records. Returns 0,
 * or -1 with the array unchanged when the system refuses. */
static int move_to_reservation(sniff_array *a, uint32_t n, size_t size, uint32_t max) {
  if ((size_t)max > SIZE_MAX / size) return -1;
  size_t reserve = round_up((size_t)max * size, STEP);
  uint8_t *start = sniff_reserve(reserve);
  if (!start) return -1;
  sniff_array r = {.items = start, .map = start, .map_len = reserve};
  if (commit(&r, ((size_t)n + 1) * size) != 0) {
    sniff_unreserve(start, reserve);
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
    if (commit(a, ((size_t)n + 1) * size) != 0) return NULL;
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
  if (a->map) sniff_unreserve(a->map, a->map_len);
  else calc_free(a->items);
  memset(a, 0, sizeof *a);
}
