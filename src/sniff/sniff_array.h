/* sniff_array.h: the growable record arrays of one analysis (connections, messages).
 *
 * Why not plain realloc: a large capture writes each record once and reads it back for the
 * summary, and in a VM the first touch of each 4 KiB page costs microseconds, and so does the
 * first touch after realloc moved the array (mremap). For a 200,000-packet capture that was a
 * third of calc-sniff's run. So an array starts on the heap (small analyses, the fuzzer and the
 * tests cost nothing extra) and, once it outgrows SNIFF_ARRAY_HEAP_MAX, moves once into its own
 * reservation of address space, sized for the array's record limit, that never moves again: it
 * is committed (mprotect) and populated (MADV_POPULATE_WRITE) in 2 MiB steps ahead of use and
 * asks for transparent huge pages (MADV_HUGEPAGE), so a step is one page, not 512. The
 * reservation is PROT_NONE until committed, so it costs no memory or commit charge, and a
 * stray access past the committed part faults instead of reading garbage. Where any of this is
 * refused (no mmap, strict limits, an old kernel) the array simply stays on the heap. */
#ifndef SNIFF_ARRAY_H
#define SNIFF_ARRAY_H
#include <stddef.h>
#include <stdint.h>

/* Largest array kept on the heap; beyond it the array moves into a reservation. */
#define SNIFF_ARRAY_HEAP_MAX ((size_t)256 << 10)

typedef struct sniff_array {
  void *items;          /* the records: on the heap, or the start of the reservation */
  uint32_t cap;         /* records usable at items */
  void *map;            /* the reservation's mapping (NULL while on the heap) */
  size_t map_len;
  size_t committed;     /* bytes of the reservation readable and writable */
} sniff_array;

/* Makes record n (0-based) of size bytes usable, allowing at most max records in all.
 * Returns the array's base (which may have moved; records below n keep their contents),
 * or NULL when memory ran out (the array is unchanged). */
void *sniff_array_grow(sniff_array *a, uint32_t n, size_t size, uint32_t max);
static inline void *sniff_array_room(sniff_array *a, uint32_t n, size_t size, uint32_t max) {
  return n < a->cap ? a->items : sniff_array_grow(a, n, size, max);
}
/* Releases the records (their contents must have been released by the caller). */
void sniff_array_free(sniff_array *a);

/* The reservation underneath, for other large buffers that want the same treatment: bytes of
 * address space starting on a huge-page boundary, PROT_NONE, with MADV_HUGEPAGE asked (NULL
 * when refused); sniff_commit makes [from, to) of it usable and populated (0, or -1). */
void *sniff_reserve(size_t bytes);
int sniff_commit(void *base, size_t from, size_t to);
void sniff_unreserve(void *base, size_t bytes);

#endif
