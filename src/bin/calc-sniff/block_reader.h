/* block_reader.h: a regular file read in blocks by a second thread, ahead of the parser.
 *
 * Why: once calc-sniff's analysis was made cheap, the kernel's copy of the file into user
 * memory (pread) was a quarter of a full analysis, spent on the same core as the parsing. A
 * reader thread does those copies into a small ring of blocks while the main thread parses the
 * previous ones, so the copy overlaps the analysis on another core. The blocks stay small
 * enough to be read while still in cache.
 *
 * Each block is preceded by `head` bytes of room, so the caller can put the unparsed tail of
 * the previous block (a record cut by the block boundary) right before the new block's bytes
 * and parse on without copying the block. Where the thread cannot be started, the blocks are
 * read by the caller's thread, with the same results. */
#ifndef CALC_SNIFF_CLI_BLOCK_READER_H
#define CALC_SNIFF_CLI_BLOCK_READER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct block_reader block_reader;

typedef struct block {
  uint8_t *data;   /* the block's bytes; data - head .. data is the caller's room */
  size_t len;      /* bytes at data (> 0) */
  off_t off;       /* file offset of data[0] */
} block;

/* Starts reading fd from offset `from` in blocks of `size` bytes, by a thread unless
 * `threaded` is false (or the thread cannot start). NULL when out of memory. */
block_reader *block_reader_start(int fd, off_t from, size_t size, size_t head, bool threaded);
/* The next block, in file order. The block returned by the previous call stays valid (so its
 * tail can be copied before the new block); older ones are reused. Returns 0, or -1 at the
 * end of the file or on a read error (the caller's fallback reads on from there and reports). */
int block_reader_next(block_reader *br, block *out);
/* Stops the thread and frees the blocks. */
void block_reader_stop(block_reader *br);

#endif
