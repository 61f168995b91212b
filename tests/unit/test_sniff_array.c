/* test_sniff_array.c: the record arrays of an analysis (sniff_array.h): records keep their
 * contents while the array grows, moves once from the heap into its reservation and then
 * stays put; the record limit holds; where the reservation is refused (an address-space
 * limit) the array grows on the heap with the same results. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sniff_array.h"

typedef struct rec { uint32_t id; uint8_t pad[100]; } rec;

/* Appends n records one at a time, as the analysis does, checking every one at the end.
 * Returns whether the array ended in a reservation. */
static bool fill_and_check(uint32_t n, uint32_t max) {
  sniff_array a = {0};
  rec *items = NULL;
  void *settled = NULL;  /* the base once in the reservation */
  for (uint32_t i = 0; i < n; i++) {
    items = sniff_array_room(&a, i, sizeof *items, max);
    assert_non_null(items);
    assert_true(i < a.cap && a.cap <= max);
    if (settled) assert_ptr_equal(items, settled);  /* never moves again */
    if (a.map && !settled) settled = items;
    memset(&items[i], (int)(i & 0xff), sizeof items[i]);
    items[i].id = i;
  }
  for (uint32_t i = 0; i < n; i++) {
    assert_int_equal(items[i].id, i);
    assert_int_equal(items[i].pad[99], i & 0xff);
  }
  bool mapped = a.map != NULL;
  sniff_array_free(&a);
  assert_null(a.items);
  return mapped;
}

static void test_small_stays_on_heap(void **state) {
  (void)state;
  assert_false(fill_and_check(100, 1u << 20));
  /* capacities double from 256 records: 2048 of 104 bytes is the last under the heap limit */
  assert_false(fill_and_check(2048, 1u << 20));
  assert_true(fill_and_check(2049, 1u << 20));
}

static void test_large_moves_once_and_stays(void **state) {
  (void)state;
  /* 60,000 records of 104 bytes: past the heap limit and over several 2 MiB steps */
  assert_true(fill_and_check(60000, 1u << 22));
}

static void test_limit(void **state) {
  (void)state;
  for (uint32_t max = 1000; max <= 40000; max += 39000) {  /* on the heap, then reserved */
    sniff_array a = {0};
    for (uint32_t i = 0; i < max; i++) assert_non_null(sniff_array_room(&a, i, sizeof(rec), max));
    assert_null(sniff_array_room(&a, max, sizeof(rec), max));
    assert_null(sniff_array_grow(&a, max + 5, sizeof(rec), max));
    assert_int_equal(a.cap, max);
    sniff_array_free(&a);
  }
}

/* Address space in use now, from /proc/self/status (sanitizers reserve terabytes of it). */
static rlim_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  assert_non_null(f);
  char line[256];
  unsigned long long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %llu kB", &kb) == 1) break;
  fclose(f);
  assert_true(kb > 0);
  return (rlim_t)kb << 10;
}

/* Under an address-space limit smaller than the reservation the array stays on the heap. */
static void test_reservation_refused(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rlim_t lim = vm_size() + ((rlim_t)1 << 30);  /* 1 GiB more; the reservation is 1.6 */
    struct rlimit rl = {lim, lim};
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
    _exit(fill_and_check(60000, 16u << 20) ? 1 : 0);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_reserve_and_commit(void **state) {
  (void)state;
  uint8_t *p = sniff_reserve(5u << 20);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % (2u << 20), 0);
  assert_int_equal(sniff_commit(p, 0, 3u << 20), 0);
  memset(p, 7, 3u << 20);
  assert_int_equal(sniff_commit(p, 3u << 20, 5u << 20), 0);
  memset(p + (3u << 20), 8, 2u << 20);
  assert_int_equal(p[0], 7);
  assert_int_equal(p[(5u << 20) - 1], 8);
  sniff_unreserve(p, 5u << 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_stays_on_heap),
      cmocka_unit_test(test_large_moves_once_and_stays),
      cmocka_unit_test(test_limit),
      cmocka_unit_test(test_reservation_refused),
      cmocka_unit_test(test_reserve_and_commit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
