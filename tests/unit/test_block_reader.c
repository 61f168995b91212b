/* test_block_reader.c: calc-sniff's read-ahead of capture files (block_reader.h), with and
 * without its thread: the blocks put together are the file from the start offset, the room
 * before each block is writable and does not disturb the previous block, the end of the file
 * and an early stop are clean. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block_reader.h"

/* A temporary file of n pseudo-random bytes; its bytes in *content (caller frees). */
static int temp_file(size_t n, uint8_t **content) {
  char path[] = "/tmp/test_block_reader-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  uint8_t *b = malloc(n ? n : 1);
  assert_non_null(b);
  uint32_t x = (uint32_t)n * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = (uint8_t)(x >> 16);
  }
  assert_int_equal(write(fd, b, n), (ssize_t)n);
  *content = b;
  return fd;
}

/* Reads the file through a block reader and checks every byte, offset and the room. */
static void read_all(size_t file_len, off_t from, size_t size, size_t head, bool threaded) {
  uint8_t *want;
  int fd = temp_file(file_len, &want);
  block_reader *br = block_reader_start(fd, from, size, head, threaded);
  assert_non_null(br);
  off_t at = from;
  block b, prev = {0};
  while (block_reader_next(br, &b) == 0) {
    assert_true(b.len > 0 && b.len <= size);
    assert_int_equal(b.off, at);
    assert_memory_equal(b.data, want + at, b.len);
    /* the previous block is still intact, and the room before this one is writable */
    memset(b.data - head, 0xAB, head);
    if (prev.data) assert_memory_equal(prev.data, want + prev.off, prev.len);
    prev = b;
    at += (off_t)b.len;
  }
  assert_int_equal(at, from > (off_t)file_len ? from : (off_t)file_len);
  assert_int_equal(block_reader_next(br, &b), -1);  /* stays at the end */
  block_reader_stop(br);
  close(fd);
  free(want);
}

static void test_whole_file(void **state) {
  (void)state;
  for (int t = 0; t < 2; t++) {
    read_all(1000000, 24, 4096, 100, t);        /* many blocks, a short last one */
    read_all(4096 * 8 + 24, 24, 4096, 16, t);   /* ends exactly on a block boundary */
    read_all(10, 0, 4096, 16, t);               /* one short block */
    read_all(0, 0, 4096, 16, t);                /* empty: the end at once */
    read_all(100, 200, 4096, 16, t);            /* starting past the end */
  }
}

/* The consumer stops half way: the thread is joined while it may be reading ahead. */
static void test_stop_early(void **state) {
  (void)state;
  uint8_t *want;
  int fd = temp_file(1 << 20, &want);
  for (int t = 0; t < 2; t++) {
    for (int stop_after = 0; stop_after < 6; stop_after++) {
      block_reader *br = block_reader_start(fd, 0, 8192, 64, t);
      assert_non_null(br);
      block b;
      for (int i = 0; i < stop_after; i++) {
        assert_int_equal(block_reader_next(br, &b), 0);
        assert_memory_equal(b.data, want + b.off, b.len);
      }
      block_reader_stop(br);
    }
  }
  close(fd);
  free(want);
}

/* A read error (here: not a readable descriptor) ends the blocks like the end of the file. */
static void test_read_error(void **state) {
  (void)state;
  for (int t = 0; t < 2; t++) {
    block_reader *br = block_reader_start(-1, 0, 4096, 16, t);
    assert_non_null(br);
    block b;
    assert_int_equal(block_reader_next(br, &b), -1);
    assert_int_equal(block_reader_next(br, &b), -1);
    block_reader_stop(br);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole_file),
      cmocka_unit_test(test_stop_early),
      cmocka_unit_test(test_read_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
