/* gen_limits.c: writes the Wireshark dissector's calc/limits.lua from libcalc's own headers, at
 * build time (CMakeLists.txt), so the dissector refuses exactly what libcalc refuses and no
 * limit is copied by hand. Usage: gen_limits OUT.lua */
#include <stdio.h>

#include "calc/limits.h"
#include "calc/num.h"
#include "calc/rng.h"
#include "pickle_internal.h"

/* name in Lua, value, where it comes from */
#define LIMIT(lua, c) {lua, (unsigned long long)(c), #c}
static const struct {
  const char *lua;
  unsigned long long value;
  const char *c;
} limits[] = {
  LIMIT("HEADER_SIZE", CALC_HEADER_SIZE),
  LIMIT("MAX_MESSAGE", CALC_MAX_MESSAGE),
  LIMIT("MAX_PAYLOAD", CALC_MAX_PAYLOAD),
  LIMIT("MAX_DEPTH", CALC_MAX_DEPTH),
  LIMIT("MAX_ARGS", CALC_MAX_ARGS),
  LIMIT("MAX_NODES", CALC_MAX_NODES),
  LIMIT("MAX_INT_BITS", CALC_MAX_INT_BITS),
  LIMIT("MAX_PRINT_DIGITS", CALC_PY_INT_MAX_STR_DIGITS),
  LIMIT("MT_N", CALC_MT_N),
  LIMIT("MAX_VALUES", PKL_MAX_VALUES),
  LIMIT("MAX_STACK", PKL_MAX_STACK),
  LIMIT("MAX_MEMO", PKL_MAX_MEMO),
  LIMIT("MAX_DICT_ITEMS", PKL_MAX_DICT_ITEMS),
  LIMIT("MAX_HASH_DEPTH", PKL_MAX_HASH_DEPTH),
  LIMIT("MAX_HASH_VALUES", PKL_MAX_HASH_VALUES),
  LIMIT("MAX_GLOBAL_NAME", PKL_MAX_GLOBAL_NAME),
  LIMIT("MAX_TEXT_DIGITS", PKL_MAX_TEXT_DIGITS),
  LIMIT("MAX_NAMED_LEN", PKL_MAX_NAMED_LEN),
  LIMIT("MAX_TREE_INT_BYTES", PKL_MAX_TREE_INT_BYTES),
  LIMIT("MAX_PYOBJS", PKL_MAX_PYOBJS),
  LIMIT("MAX_PYBYTES", PKL_MAX_PYBYTES),
  LIMIT("MAX_PYDEPTH", PKL_MAX_PYDEPTH),
};

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT.lua\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "w");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  fputs("-- calc/limits.lua: libcalc's limits for the dissector. Generated at build time by\n"
        "-- lab/wireshark/gen_limits.c from include/calc/*.h and src/lib/pickle_internal.h: do not edit.\n"
        "return {\n", f);
  for (size_t i = 0; i < sizeof limits / sizeof *limits; i++)
    fprintf(f, "  %s = %llu, -- %s\n", limits[i].lua, limits[i].value, limits[i].c);
  fputs("}\n", f);
  if (fclose(f) != 0) {
    perror(argv[1]);
    return 1;
  }
  return 0;
}
