/* failmalloc.h: an allocation hook for tests that fails one chosen allocation (nghttp2's
 * failmalloc): install `failmalloc` with calc_set_allocator, arm it, run, repeat for every
 * index to see each failure handled (no crash, no leak under ASan). */
#ifndef FAILMALLOC_H
#define FAILMALLOC_H
#include "calc/alloc.h"

extern long failmalloc_fail_at;  /* index of the allocation to fail from the last arm; -1 none */
extern long failmalloc_count;    /* allocations (malloc and realloc) since the last arm */
extern const calc_allocator failmalloc;

/* Fails allocation number fail_at (0-based) from now on, or none for -1. */
void failmalloc_arm(long fail_at);

#endif
