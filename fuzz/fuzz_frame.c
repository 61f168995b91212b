/* fuzz_frame: calc_frame_parse and the incremental framer on arbitrary byte streams.
 * Seeds: fuzz/corpus/fuzz_frame (fuzz/make_corpus.py).
 * Checks: no crash, leak or UB; feeding the stream in chunks (sizes taken from the input)
 * yields exactly the messages calc_frame_parse finds in the whole buffer, in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "calc/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = (size_t)data[0] % 37 + 1;  /* first byte: the chunk size of the feed */
  data++;
  size--;
  calc_framer f;
  calc_framer_init(&f, 0);
  size_t off = 0, fed = 0;
  int dead = 0;
  while (fed < size && !dead) {
    size_t n = size - fed < chunk ? size - fed : chunk;
    if (calc_framer_feed(&f, data + fed, n) != 0) abort();
    fed += n;
    calc_msg m;
    int r;
    while ((r = calc_framer_next(&f, &m)) == 1) {
      calc_header h;
      ssize_t whole = calc_frame_parse(data + off, size - off, &h);
      if (whole < 12 || (size_t)whole != m.raw_len || memcmp(data + off, m.raw, m.raw_len)) abort();
      if (m.payload_len != m.raw_len - 12 || m.payload != m.raw + 12) abort();
      off += (size_t)whole;
    }
    if (r < 0) {
      calc_header h;
      if (calc_frame_parse(data + off, size - off, &h) != -1) abort();
      dead = 1;
    }
  }
  if (!dead) {
    calc_header h;
    ssize_t r = calc_frame_parse(data + off, size - off, &h);
    if (r != -2) abort();  /* everything whole was taken; the rest is a partial message */
    if (calc_framer_pending(&f) != size - off) abort();
  }
  calc_framer_free(&f);
  return 0;
}
