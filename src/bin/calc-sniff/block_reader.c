/* block_reader.c: a file read ahead in blocks by a second thread (why: block_reader.h).
 *
 * A ring of SLOTS blocks. The reader fills slot (filled % SLOTS) once the consumer has
 * released it; the consumer takes slot (taken % SLOTS) once it is filled. The consumer holds
 * the block it was last given and the one before it, so the reader runs at most
 * SLOTS - 2 blocks ahead. One mutex and two condition variables: a handover per block of
 * 256 KiB costs nothing next to the copy. */
#include "block_reader.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "sniff_array.h"

#define SLOTS 4

struct slot {
  uint8_t *buf;    /* head bytes of room, then size bytes of block */
  size_t len;      /* 0: end of file or error */
  off_t off;
};

struct block_reader {
  int fd;
  size_t size, head;
  off_t next_off;          /* reader: where the next block starts */
  uint8_t *mem;            /* all slots' buffers: one huge-page reservation, or the heap */
  size_t mem_len;
  bool mem_mapped;
  struct slot slot[SLOTS];
  pthread_mutex_t mu;
  pthread_cond_t filled_cv, freed_cv;
  uint64_t filled;         /* blocks the reader has finished (including the final empty one) */
  uint64_t taken;          /* blocks handed to the consumer */
  bool stop, done, threaded;
  pthread_t thread;
};

/* Reads block number k into its slot. Returns false at the end of the file or on an error. */
static bool fill(block_reader *br, uint64_t k) {
  struct slot *s = &br->slot[k % SLOTS];
  ssize_t n;
  do n = pread(br->fd, s->buf + br->head, br->size, br->next_off);
  while (n < 0 && errno == EINTR);
  s->off = br->next_off;
  s->len = n > 0 ? (size_t)n : 0;
  br->next_off += s->len;
  return n > 0;
}

static void *reader_main(void *arg) {
  block_reader *br = arg;
  pthread_mutex_lock(&br->mu);
  for (uint64_t k = 0;; k++) {
    /* slot k % SLOTS is free once the consumer has moved two blocks past its last use */
    while (!br->stop && k >= br->taken + SLOTS - 2) pthread_cond_wait(&br->freed_cv, &br->mu);
    if (br->stop) break;
    pthread_mutex_unlock(&br->mu);
    bool more = fill(br, k);
    pthread_mutex_lock(&br->mu);
    br->filled = k + 1;
    pthread_cond_signal(&br->filled_cv);
    if (!more) break;
  }
  br->done = true;
  pthread_mutex_unlock(&br->mu);
  return NULL;
}

block_reader *block_reader_start(int fd, off_t from, size_t size, size_t head, bool threaded) {
  block_reader *br = calloc(1, sizeof *br);
  if (!br) return NULL;
  br->fd = fd;
  br->size = size;
  br->head = head;
  br->next_off = from;
  /* Read ahead, the buffers' pages are touched by every block; as with the analysis' arrays,
   * huge pages spare a fault per 4 KiB page (sniff_array.h). Read in this thread (small
   * files), only the pages used are touched, so plain lazily mapped memory is cheaper. */
  br->mem_len = SLOTS * (head + size);
  if (threaded && (br->mem = sniff_reserve(br->mem_len)) && sniff_commit(br->mem, 0, br->mem_len) == 0) {
    br->mem_mapped = true;
  } else {
    sniff_unreserve(br->mem, br->mem_len);
    if (!(br->mem = malloc(br->mem_len))) {
      free(br);
      return NULL;
    }
  }
  for (int i = 0; i < SLOTS; i++) br->slot[i].buf = br->mem + (size_t)i * (head + size);
  pthread_mutex_init(&br->mu, NULL);
  pthread_cond_init(&br->filled_cv, NULL);
  pthread_cond_init(&br->freed_cv, NULL);
  br->threaded = threaded && pthread_create(&br->thread, NULL, reader_main, br) == 0;
  return br;
}

int block_reader_next(block_reader *br, block *out) {
  uint64_t k = br->taken;
  struct slot *s = &br->slot[k % SLOTS];
  if (br->threaded) {
    pthread_mutex_lock(&br->mu);
    if (br->filled <= k && br->done) k = UINT64_MAX;  /* the end was handed out already */
    else {
      br->taken = k + 1;  /* frees block k - 2 for the reader */
      pthread_cond_signal(&br->freed_cv);
      while (br->filled <= k) pthread_cond_wait(&br->filled_cv, &br->mu);
    }
    pthread_mutex_unlock(&br->mu);
    if (k == UINT64_MAX) return -1;
  } else {
    if (br->done) return -1;
    br->taken = k + 1;
    br->done = !fill(br, k);
  }
  if (!s->len) return -1;
  out->data = s->buf + br->head;
  out->len = s->len;
  out->off = s->off;
  return 0;
}

void block_reader_stop(block_reader *br) {
  if (!br) return;
  if (br->threaded) {
    pthread_mutex_lock(&br->mu);
    br->stop = true;
    pthread_cond_signal(&br->freed_cv);
    pthread_mutex_unlock(&br->mu);
    pthread_join(br->thread, NULL);
    pthread_mutex_destroy(&br->mu);
    pthread_cond_destroy(&br->filled_cv);
    pthread_cond_destroy(&br->freed_cv);
  }
  if (br->mem_mapped) sniff_unreserve(br->mem, br->mem_len);
  else free(br->mem);
  free(br);
}
