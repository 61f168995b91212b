/* input_file.c: reading capture files (pcap, pcapng; - reads stdin) through libpcap, and
 * plain pcap files directly in blocks (block_reader.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "block_reader.h"
#include "sniff_cli.h"

#define READ_BUFFER (64 << 10)
/* read_direct's blocks: small enough to be parsed while still in cache, and with the room
 * before each (one snapshot length) four of them fill one 2 MiB huge page */
#define READ_BLOCK ((256 << 10) - 64)


/* The records of a classic pcap file taken in place from blocks a reader thread reads ahead
 * (block_reader.h), without libpcap's two fread calls per record (stdio's buffer, then
 * libpcap's): about a quarter of the instructions of a full analysis, and the kernel's copy
 * then runs on another core. (A mapping of the file saves the copy too but was slower here:
 * the parser then waits for a page fault per 4 KiB of file.) libpcap has opened the file and
 * checked its header (p); records are taken here only in the plain case, where libpcap would
 * hand out each record's bytes untouched:
 *   - a regular file starting with the native-order microsecond magic, version 2.4 (no
 *     byte swapping, no time scaling, no swapped-length quirk of older minor versions);
 *   - a complete record with caplen <= len and caplen <= the snapshot length libpcap settled
 *     on (so none of libpcap's cuts or errors applies).
 * At the first record that is not plain (damaged, cut short, the end of the file) or on a
 * read error, the stream libpcap reads from is positioned at that record and 0 is returned:
 * the libpcap loop then reads the rest exactly as it read whole files before, with libpcap's
 * checks and messages. Time stamps are taken as libpcap takes them (32-bit signed fields).
 * Returns 0, or -1 with a message when the stream cannot be positioned. */
static int read_direct(const char *file, FILE *f, pcap_t *p, run *r) {
  struct stat st;
  int fd = fileno(f);
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
  int snap = pcap_snapshot(p);
  if (snap <= 0 || pcap_get_tstamp_precision(p) != PCAP_TSTAMP_PRECISION_MICRO) return 0;
  /* libpcap read the file header from the start of the file (not from wherever an inherited
   * descriptor such as /dev/stdin happened to be): the records follow at offset 24 */
  if (ftello(f) != 24) return 0;
  uint8_t fh[24];
  uint32_t magic;
  uint16_t major, minor;
  if (pread(fd, fh, sizeof fh, 0) != (ssize_t)sizeof fh) return 0;
  memcpy(&magic, fh, 4);
  memcpy(&major, fh + 4, 2);
  memcpy(&minor, fh + 6, 2);
  if (magic != 0xa1b2c3d4u || major != 2 || minor != 4) return 0;
  /* A record cut by a block boundary is carried to the room before the next block: it is
   * shorter than a record header and the longest record libpcap accepts. */
  /* A file of a few blocks is read in this thread, in one block: a thread and 2 MiB of
   * populated buffers cost more than they save there (the lab's captures are kilobytes). */
  off_t body = st.st_size > 24 ? st.st_size - 24 : 1;
  bool ahead = body > 4 * (off_t)READ_BLOCK;
  size_t block_size = ahead ? READ_BLOCK : (size_t)body;
  block_reader *br = block_reader_start(fd, 24, block_size, 16 + (size_t)snap, ahead);
  if (!br) return 0;
  off_t pos = 24;            /* file offset of the next record */
  const uint8_t *at = NULL;  /* the next record's bytes ... */
  size_t left = 0;           /* ... and how many of them are at hand */
  block b;
  bool plain = true;
  while (plain && block_reader_next(br, &b) == 0) {
    uint8_t *start = b.data - left;
    if (left) memcpy(start, at, left);
    at = start;
    left += b.len;
    while (left >= 16) {
      struct pcap_pkthdr h;
      int32_t sec, usec;
      memcpy(&sec, at, 4);
      memcpy(&usec, at + 4, 4);
      memcpy(&h.caplen, at + 8, 4);
      memcpy(&h.len, at + 12, 4);
      if (h.caplen > h.len || h.caplen > (uint32_t)snap) {
        plain = false;
        break;
      }
      if (left - 16 < h.caplen) break;
      h.ts.tv_sec = sec;
      h.ts.tv_usec = usec;
      handle_frame(r, &h, at + 16);
      at += 16 + (size_t)h.caplen;
      left -= 16 + (size_t)h.caplen;
      pos += 16 + (off_t)h.caplen;
    }
  }
  block_reader_stop(br);
  if (fseeko(f, pos, SEEK_SET) != 0) {
    fprintf(stderr, "calc-sniff: %s: cannot seek after %" PRIu64 " packets: %s\n", file,
            r->an.pkts, strerror(errno));
    return -1;
  }
  return 0;
}

/* Reads a whole capture file. 0, or -1 with a message (exit 2). */
int read_file(const char *file, run *r, const input *in) {
  char err[PCAP_ERRBUF_SIZE] = "";
  /* A file is opened here with a 64 KiB stdio buffer: where libpcap reads the records (not
   * read_direct's plain case) it reads each with fread, and with the default buffer (one
   * 4 KiB block) a 30 MB capture costs ~8,000 read calls. Not larger: the buffer is filled
   * once even when read_direct then reads the file, and each fresh page costs a fault. */
  pcap_t *p = NULL;
  FILE *f = strcmp(file, "-") ? fopen(file, "rb") : NULL;
  char *iobuf = NULL;  /* glibc ignores setvbuf's size without a buffer: give it one */
  if (f) {
    if ((iobuf = malloc(READ_BUFFER))) setvbuf(f, iobuf, _IOFBF, READ_BUFFER);
    p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_MICRO, err);
    if (!p) {  /* libpcap closes the file only on success (in pcap_close) */
      fclose(f);
      free(iobuf);
    }
  } else {
    p = pcap_open_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_MICRO, err);
  }
  if (!p) {
    fprintf(stderr, "calc-sniff: %s: cannot read capture: %s\n", file, err);
    return -1;
  }
  if (check_dlt(p, file, r) < 0 || (in && open_dumper(p, in, r) < 0)) {
    pcap_close(p);
    free(iobuf);
    return -1;
  }
  int rc = 0;
  if (f && read_direct(file, f, p, r) < 0) {
    rc = -1;
    goto done;
  }
  for (;;) {
    struct pcap_pkthdr *h;
    const u_char *bytes;
    int n = pcap_next_ex(p, &h, &bytes);
    if (n == 1) {
      handle_frame(r, h, bytes);
      continue;
    }
    if (n == PCAP_ERROR_BREAK) break;
    fprintf(stderr, "calc-sniff: %s: corrupt or truncated capture after %" PRIu64 " packets: %s\n",
            file, r->an.pkts, pcap_geterr(p));
    rc = -1;
    break;
  }
done:
  if (r->dumper) pcap_dump_close(r->dumper);
  r->dumper = NULL;
  pcap_close(p);  /* closes f, which used iobuf */
  free(iobuf);
  return rc;
}
