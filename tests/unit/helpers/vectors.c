#include "helpers/vectors.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef CALC_VECTORS_DIR
#error "CALC_VECTORS_DIR must name the checkout's captures/vectors (set by CMakeLists.txt)"
#endif

const char *test_vectors_path(const char *name, char *buf, size_t cap) {
  const char *dir = getenv("CALC_VECTORS");
  snprintf(buf, cap, "%s/%s", dir && *dir ? dir : CALC_VECTORS_DIR, name);
  return buf;
}
