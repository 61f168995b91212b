/* calc/rng.h: CPython's random.Random (MT19937) state, as carried in a rand request. */
#ifndef CALC_RNG_H
#define CALC_RNG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CALC_MT_N 624

typedef struct calc_rng {
  uint32_t mt[CALC_MT_N];
  uint32_t pos;        /* 0..624, CPython's index (getstate()'s 625th item) */
  bool has_gauss;      /* gauss_next is not None */
  double gauss_next;
} calc_rng;

/* Seeds like random.seed(<bytes>) would with init_by_array over 32-bit words of `key`. */
void calc_rng_seed_words(calc_rng *r, const uint32_t *key, size_t nkey);
/* Fresh state from the OS's entropy, as random.Random() does. 0 or -1. */
int calc_rng_seed_os(calc_rng *r);
uint32_t calc_rng_u32(calc_rng *r);
/* random.random(): (a*67108864 + b) / 2**53 from two outputs a>>5, b>>6. */
double calc_rng_random(calc_rng *r);

#endif
