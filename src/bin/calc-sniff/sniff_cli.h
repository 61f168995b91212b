/* sniff_cli.h: the calc-sniff program's parts (src/bin/calc-sniff): the command line
 * (main.c), capture input (input_file.c with block_reader.c, input_live.c; input.c what each
 * does with a frame), the timeline's notes (notes.c, from the analysis' events) and one
 * printer per output (out_timeline.c, out_summary.c, out_json.c, out_trace.c, out_verify.c).
 * The analysis itself is src/sniff (sans-I/O). */
#ifndef CALC_SNIFF_CLI_H
#define CALC_SNIFF_CLI_H
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sniff.h"

/* calc-sniff's exit status, the one definition (the table in docs/sniff.md; scripts and the
 * lab read these numbers, so they never change). */
typedef enum sniff_exit {
  SNIFF_EXIT_OK = 0,           /* done; verify: pass */
  SNIFF_EXIT_FAIL = 1,         /* verify: at least one difference */
  SNIFF_EXIT_USAGE = 2,        /* usage or input error: bad arguments, unreadable input */
  SNIFF_EXIT_INCONCLUSIVE = 3, /* verify: dropped packets or missing bytes decide nothing */
} sniff_exit;
#define MAX_PORTS 16

typedef enum { OUT_TIMELINE, OUT_JSON, OUT_TRACE, OUT_SUMMARY, OUT_STATS, OUT_NONE } out_mode;

typedef struct input {
  const char *file;          /* -r */
  const char *iface;         /* -i */
  double duration;           /* --duration, 0 = until SIGINT */
  const char *ready_file;    /* --ready-file */
  const char *write_file;    /* -w */
  unsigned buffer_kib;       /* -B: live capture's kernel buffer, 0 = the default */
  uint16_t ports[MAX_PORTS];
  int nports;
} input;

typedef struct run {
  sniff_an an;
  out_mode mode;
  bool packets;              /* --json --packets: one record per TCP segment as it comes */
  int dlt;
  pcap_dumper_t *dumper;
  uint64_t drops;
  bool live;
  FILE *out;
  struct obuf *ob;           /* timeline: buffered packet lines (obuf.h) */
  calc_buf notes;            /* timeline, --packets: "; "-separated notes on the frame just fed */
} run;

/* ---- input (input_file.c, input_live.c; input.c): 0, or -1 with a message on stderr ---- */
/* Reads a whole capture file (in may be NULL: no -w). */
int read_file(const char *file, run *r, const input *in);
/* Live capture until --duration passes or SIGINT/SIGTERM arrives. */
int capture_live(const input *in, run *r);
/* One frame: saved (-w), fed to the analysis, printed when the output is per packet. */
void handle_frame(run *r, const struct pcap_pkthdr *h, const uint8_t *bytes);
/* The input's link type is one calc-sniff decodes (else a message); starts the output. */
int check_dlt(pcap_t *p, const char *what, run *r);
int open_dumper(pcap_t *p, const input *in, run *r);

/* ---- outputs ---- */
/* The analysis' event callback (sniff_opts.on_event) for a run (ctx): each event appended to
 * r->notes as the timeline words it (notes.c). */
void note_event(void *ctx, const sniff_event *ev);
void print_timeline_head(run *r);
void print_packet(run *r, const sniff_pkt *p);
void print_undecodable(run *r, uint32_t caplen, const char *why);
void print_summary(run *r, bool header);
void print_stats(run *r);
void print_json(run *r);
void print_json_packet(run *r, const sniff_pkt *p);
void print_trace(const sniff_an *an, FILE *out);
/* Verifies capture c against golden g (both analysed and finished) and prints the report as
 * text or, json true, JSON Lines; returns the exit status. */
sniff_exit print_verify(const sniff_an *g, const sniff_an *c, uint64_t drops, bool json, FILE *out);
/* The capture misses bytes (gaps, snaplen cuts, undecodable frames, analysis limits). */
bool analysis_lossy(const sniff_an *an);

#endif
