#ifndef CALC_TEST_VECTORS_H
#define CALC_TEST_VECTORS_H
#include <stddef.h>

/* Path of one of the reference vector files (legacy-expressions.jsonl, legacy-protocol.jsonl):
 * in $CALC_VECTORS when set, else in the checkout's captures/vectors (CALC_VECTORS_DIR, given
 * by CMake), so a test never depends on anything outside the repository. */
const char *test_vectors_path(const char *name, char *buf, size_t cap);

#endif
