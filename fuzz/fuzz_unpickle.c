/* fuzz_unpickle: both payload decoders on arbitrary bytes.
 * Seeds: fuzz/corpus/fuzz_unpickle (fuzz/make_corpus.py, from the vectors).
 * Checks: no crash, leak or UB (ASan/UBSan); an accepted request re-encodes, and that encoding
 * decodes and re-encodes to the same bytes; an accepted response prints with str() and repr(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "calc/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  calc_tree t, t2;
  calc_exc e;
  if (calc_unpickle_request(data, size, &t, &e) == 0) {
    calc_buf a, b;
    calc_buf_init(&a, 0);
    calc_buf_init(&b, 0);
    if (calc_pickle_request(&t, &a) != 0) abort();
    if (calc_unpickle_request(a.data, a.len, &t2, &e) != 0) abort();
    if (calc_pickle_request(&t2, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len)) abort();
    calc_tree_free(&t2);
    calc_tree_free(&t);
    calc_buf_free(&a);
    calc_buf_free(&b);
  }
  calc_pyobj *o;
  if (calc_unpickle_response(data, size, &o, &e) == 0) {
    calc_buf s;
    calc_buf_init(&s, 0);
    calc_pyobj_str(o, &s);
    calc_pyobj_repr(o, &s);
    calc_buf_free(&s);
    calc_pyobj_free(o);
  }
  return 0;
}
