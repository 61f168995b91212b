/* rng.c: MT19937 exactly as CPython's Modules/_randommodule.c drives it, so a state carried in
 * a request gives the same random() sequence as random.Random.setstate() would. */
#include "calc/rng.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

static void mt_init_genrand(calc_rng *r, uint32_t s) {
  r->mt[0] = s;
  for (uint32_t i = 1; i < CALC_MT_N; i++)
    r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + i;
  r->pos = CALC_MT_N;
}

void calc_rng_seed_words(calc_rng *r, const uint32_t *key, size_t nkey) {
  mt_init_genrand(r, 19650218u);
  size_t i = 1, j = 0;
  size_t k = CALC_MT_N > nkey ? CALC_MT_N : nkey;
  uint32_t *mt = r->mt;
  for (; k; k--) {
    mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525u)) + (nkey ? key[j] : 0) + (uint32_t)j;
    i++;
    j++;
    if (i >= CALC_MT_N) {
      mt[0] = mt[CALC_MT_N - 1];
      i = 1;
    }
    if (j >= nkey) j = 0;
  }
  for (k = CALC_MT_N - 1; k; k--) {
    mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
    i++;
    if (i >= CALC_MT_N) {
      mt[0] = mt[CALC_MT_N - 1];
      i = 1;
    }
  }
  mt[0] = 0x80000000u;  /* non-zero initial array is assured */
  r->pos = CALC_MT_N;
  r->has_gauss = false;
  r->gauss_next = 0.0;
}

int calc_rng_seed_os(calc_rng *r) {
  /* random.seed(None): init_by_array over N words from the OS's entropy source. */
  uint32_t key[CALC_MT_N];
  size_t got = 0;
  while (got < sizeof key) {
    ssize_t n = getrandom((char *)key + got, sizeof key - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)n;
  }
  calc_rng_seed_words(r, key, CALC_MT_N);
  return 0;
}

uint32_t calc_rng_u32(calc_rng *r) {
  static const uint32_t mag01[2] = {0u, MT_MATRIX_A};
  uint32_t *mt = r->mt;
  uint32_t y;
  if (r->pos >= CALC_MT_N) {
    int kk;
    for (kk = 0; kk < CALC_MT_N - MT_M; kk++) {
      y = (mt[kk] & MT_UPPER) | (mt[kk + 1] & MT_LOWER);
      mt[kk] = mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < CALC_MT_N - 1; kk++) {
      y = (mt[kk] & MT_UPPER) | (mt[kk + 1] & MT_LOWER);
      mt[kk] = mt[kk + (MT_M - CALC_MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    y = (mt[CALC_MT_N - 1] & MT_UPPER) | (mt[0] & MT_LOWER);
    mt[CALC_MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    r->pos = 0;
  }
  y = mt[r->pos++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

double calc_rng_random(calc_rng *r) {
  uint32_t a = calc_rng_u32(r) >> 5, b = calc_rng_u32(r) >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}
