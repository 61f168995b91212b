/* calc-sniff: capture or read calculator traffic, rebuild every TCP conversation and message,
 * print a timeline / JSON Lines / the reduced behaviour, or verify a run against a golden
 * capture, so that a run is judged by what it put on the wire (usage in docs/sniff.md). libpcap handles live here; the analysis is
 * src/sniff (sans-I/O). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obuf.h"
#include "sniff_cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: calc-sniff [-r FILE|-] [-i IFACE] [-p PORTS]\n"
          "                  [--json [--packets]|--trace|--summary|--stats]\n"
          "                  [--duration S] [--ready-file PATH] [-w FILE] [-B KIB]\n"
          "                  [--server-port N] [--proxy-port N]\n"
          "       calc-sniff verify --golden G.pcap (-r CAPTURE | -i IFACE --duration S)\n"
          "                  [--json|--trace] [--ready-file PATH] [-w FILE] [-B KIB] [-p PORTS]\n"
          "                  [--server-port N] [--proxy-port N]\n"
          "                  [--golden-server-port N] [--golden-proxy-port N]\n"
          "\n"
          "Rebuilds calculator conversations from a capture (pcap or pcapng; - reads stdin)\n"
          "or from live traffic (default interface lo, ports 9998,9999).\n"
          "  -r FILE          read a capture file\n"
          "  -i IFACE         capture live (default lo when no -r is given)\n"
          "  -p PORTS         comma-separated TCP ports for the capture filter (default 9998,9999)\n"
          "  --server-port N  the calculator server's port (default 9999)\n"
          "  --proxy-port N   the proxy's port (default 9998)\n"
          "  --golden-server-port N, --golden-proxy-port N\n"
          "                   the golden capture's ports (default: the capture's)\n"
          "  --json           JSON Lines: one record per connection and per message;\n"
          "                   verify: one record per check with its items, then the verdict\n"
          "  --packets        with --json: also one record per TCP segment\n"
          "  --trace          the reduced behaviour verify compares (diffable text)\n"
          "  --summary        one line per connection only\n"
          "  --stats          totals only: connections by role, state and teardown, messages\n"
          "  --duration S     stop a live capture after S seconds (else at SIGINT/SIGTERM)\n"
          "  --ready-file P   live: write P once the capture is active (scripts wait for it)\n"
          "  -w FILE          also save the raw packets to FILE (pcap)\n"
          "  -B KIB           live: kernel capture buffer in KiB (default 65536; 64 up to 1048576)\n"
          "  --duration, --ready-file and -B are for live capture only (not with -r)\n"
          "verify exit status: 0 pass, 1 fail, 2 usage or input error, 3 inconclusive\n"
          "(kernel drops, or bytes missing from a capture).\n");
}

static int parse_ports(const char *s, input *in) {
  in->nports = 0;
  while (*s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < 1 || v > 65535 || in->nports == MAX_PORTS) return -1;
    in->ports[in->nports++] = (uint16_t)v;
    if (*end == ',') end++;
    else if (*end) return -1;
    s = end;
  }
  return in->nports ? 0 : -1;
}

static int parse_port(const char *s, uint16_t *p) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end || v < 1 || v > 65535) return -1;
  *p = (uint16_t)v;
  return 0;
}

/* The first option given that only a live capture uses (NULL: none). A file read with one would
 * silently ignore it: no ready file appears, no duration or buffer applies. */
static const char *live_only_option(const input *in) {
  if (in->buffer_kib) return "-B";
  if (in->duration > 0) return "--duration";
  if (in->ready_file) return "--ready-file";
  return NULL;
}

enum {
  OPT_JSON = 256, OPT_TRACE, OPT_SUMMARY, OPT_STATS, OPT_DURATION, OPT_READY, OPT_GOLDEN, OPT_SERVER,
  OPT_PROXY, OPT_GOLDEN_SERVER, OPT_GOLDEN_PROXY, OPT_PACKETS, OPT_HELP
};
/* Reads the capture file or captures live, as `in` says, feeding every frame to r. */
static int run_input(const input *in, run *r) {
  if (in->file) return read_file(in->file, r, in);
  return capture_live(in, r);
}

static const struct option long_opts[] = {
    {"read", required_argument, 0, 'r'},       {"buffer-size", required_argument, 0, 'B'},       {"interface", required_argument, 0, 'i'},
    {"ports", required_argument, 0, 'p'},      {"write", required_argument, 0, 'w'},
    {"json", no_argument, 0, OPT_JSON},        {"trace", no_argument, 0, OPT_TRACE},
    {"summary", no_argument, 0, OPT_SUMMARY},  {"stats", no_argument, 0, OPT_STATS},  {"duration", required_argument, 0, OPT_DURATION},
    {"ready-file", required_argument, 0, OPT_READY}, {"golden", required_argument, 0, OPT_GOLDEN},
    {"server-port", required_argument, 0, OPT_SERVER},
    {"proxy-port", required_argument, 0, OPT_PROXY},
    {"golden-server-port", required_argument, 0, OPT_GOLDEN_SERVER},
    {"golden-proxy-port", required_argument, 0, OPT_GOLDEN_PROXY},
    {"packets", no_argument, 0, OPT_PACKETS}, {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};


/* calc-sniff without verify: one analysis, one output. */
static sniff_exit run_plain(const input *in, sniff_opts *so, out_mode mode, bool packets) {
  run r;
  memset(&r, 0, sizeof r);
  r.out = stdout;
  r.mode = mode;
  r.packets = packets;
  so->decode = mode == OUT_TIMELINE || mode == OUT_JSON;
  if (mode == OUT_TIMELINE || packets) {  /* the outputs that print notes per packet */
    so->on_event = note_event;
    so->event_ctx = &r;
  }
  calc_buf_init(&r.notes, 0);
  sniff_an_init(&r.an, so);
  static obuf ob;
  if (mode == OUT_TIMELINE) {
    ob.f = r.out;
    r.ob = &ob;
  }
  int rc = run_input(in, &r);
  if (r.ob) ob_flush(r.ob);
  sniff_finish(&r.an);
  if (rc < 0) {
    sniff_an_free(&r.an);
    calc_buf_free(&r.notes);
    return SNIFF_EXIT_USAGE;
  }
  if (mode == OUT_TIMELINE) print_summary(&r, true);
  else if (mode == OUT_SUMMARY) print_summary(&r, false);
  else if (mode == OUT_STATS) print_stats(&r);
  else if (mode == OUT_JSON) print_json(&r);
  else if (mode == OUT_TRACE) print_trace(&r.an, stdout);
  if (r.an.incomplete == CALC_ERR_LIMIT)
    fprintf(stderr, "calc-sniff: %s (more than %u connections or %u messages): analysis incomplete\n",
            calc_strerror(r.an.incomplete), SNIFF_MAX_CONNS, SNIFF_MAX_MSGS);
  else if (r.an.incomplete != CALC_OK)
    fprintf(stderr, "calc-sniff: %s: analysis incomplete\n", calc_strerror(r.an.incomplete));
  if (r.live && r.drops)
    fprintf(stderr, "calc-sniff: warning: the kernel dropped %llu packets\n", (unsigned long long)r.drops);
  sniff_an_free(&r.an);
  calc_buf_free(&r.notes);
  return SNIFF_EXIT_OK;
}

/* calc-sniff verify: the golden (with its own ports) and the capture, then the report. */
static sniff_exit run_verify(const input *in, const sniff_opts *so, const sniff_opts *gso, const char *golden,
                      out_mode mode) {
  run g, c;
  memset(&g, 0, sizeof g);
  memset(&c, 0, sizeof c);
  g.mode = c.mode = OUT_NONE;
  g.out = c.out = stdout;
  sniff_an_init(&g.an, gso);
  sniff_an_init(&c.an, so);
  sniff_exit rc;
  if (read_file(golden, &g, NULL) < 0 || run_input(in, &c) < 0) {
    rc = SNIFF_EXIT_USAGE;
  } else {
    sniff_finish(&g.an);
    sniff_finish(&c.an);
    if (mode == OUT_TRACE) {
      printf("== golden %s\n", golden);
      print_trace(&g.an, stdout);
      printf("== capture %s\n", in->file ? in->file : in->iface);
      print_trace(&c.an, stdout);
      printf("== differences\n");
    }
    rc = print_verify(&g.an, &c.an, c.drops, mode == OUT_JSON, stdout);
  }
  sniff_an_free(&g.an);
  sniff_an_free(&c.an);
  return rc;
}

int main(int argc, char **argv) {
  bool verify = argc > 1 && !strcmp(argv[1], "verify");
  if (verify) {
    argv++;
    argc--;
  }
  input in;
  memset(&in, 0, sizeof in);
  sniff_opts so, gso;  /* the capture's ports, the golden's (0: the capture's) */
  sniff_opts_default(&so);
  sniff_opts_default(&gso);
  gso.server_port = gso.proxy_port = 0;
  bool packets = false;
  out_mode mode = OUT_TIMELINE;
  const char *golden = NULL;
  bool ports_given = false;
  int ch;
  while ((ch = getopt_long(argc, argv, "r:i:p:w:B:h", long_opts, NULL)) != -1) {
    switch (ch) {
      case 'r': in.file = optarg; break;
      case 'i': in.iface = optarg; break;
      case 'w': in.write_file = optarg; break;
      case 'B': {
        /* digits only: strtoul alone would also take leading blanks, a sign and wrap-around */
        char *end = optarg;
        while (*end >= '0' && *end <= '9') end++;
        errno = 0;
        unsigned long kib = *optarg && !*end ? strtoul(optarg, &end, 10) : 0;
        if (errno || kib < 64 || kib > 1048576) {
          fprintf(stderr, "calc-sniff: -B: expected KiB from 64 to 1048576, got \"%s\"\n", optarg);
          return SNIFF_EXIT_USAGE;
        }
        in.buffer_kib = (unsigned)kib;
        break;
      }
      case 'p':
        if (parse_ports(optarg, &in) < 0) {
          fprintf(stderr, "calc-sniff: -p: expected comma-separated ports, got \"%s\"\n", optarg);
          return SNIFF_EXIT_USAGE;
        }
        ports_given = true;
        break;
      case OPT_JSON: mode = OUT_JSON; break;
      case OPT_TRACE: mode = OUT_TRACE; break;
      case OPT_SUMMARY: mode = OUT_SUMMARY; break;
      case OPT_STATS: mode = OUT_STATS; break;
      case OPT_DURATION: {
        char *end;
        in.duration = strtod(optarg, &end);
        if (*end || in.duration <= 0) {
          fprintf(stderr, "calc-sniff: --duration: expected seconds > 0, got \"%s\"\n", optarg);
          return SNIFF_EXIT_USAGE;
        }
        break;
      }
      case OPT_READY: in.ready_file = optarg; break;
      case OPT_GOLDEN: golden = optarg; break;
      case OPT_PACKETS: packets = true; break;
      case OPT_SERVER:
      case OPT_PROXY:
      case OPT_GOLDEN_SERVER:
      case OPT_GOLDEN_PROXY:
        if (parse_port(optarg, ch == OPT_SERVER ? &so.server_port : ch == OPT_PROXY ? &so.proxy_port
                               : ch == OPT_GOLDEN_SERVER ? &gso.server_port : &gso.proxy_port) < 0) {
          fprintf(stderr, "calc-sniff: bad port \"%s\"\n", optarg);
          return SNIFF_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return SNIFF_EXIT_OK;
      default: usage(stderr); return SNIFF_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "calc-sniff: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return SNIFF_EXIT_USAGE;
  }
  if (in.file && in.iface) {
    fprintf(stderr, "calc-sniff: -r and -i exclude each other\n");
    return SNIFF_EXIT_USAGE;
  }
  const char *live_only = live_only_option(&in);
  if (in.file && live_only) {
    fprintf(stderr, "calc-sniff: %s is for a live capture (-i), not for reading a file (-r)\n", live_only);
    return SNIFF_EXIT_USAGE;
  }
  if (!ports_given) {
    in.ports[0] = so.proxy_port;
    in.ports[1] = so.server_port;
    in.nports = 2;
  }
  if (golden && !verify) {
    fprintf(stderr, "calc-sniff: --golden belongs to `calc-sniff verify`\n");
    return SNIFF_EXIT_USAGE;
  }

  if (!verify) {
    if (packets && mode != OUT_JSON) {
      fprintf(stderr, "calc-sniff: --packets goes with --json\n");
      return SNIFF_EXIT_USAGE;
    }
    return run_plain(&in, &so, mode, packets);
  }
  if (!golden) {
    fprintf(stderr, "calc-sniff verify: --golden G.pcap is required\n");
    usage(stderr);
    return SNIFF_EXIT_USAGE;
  }
  if (!in.file && !in.iface) {
    fprintf(stderr, "calc-sniff verify: give -r CAPTURE or -i IFACE --duration S\n");
    return SNIFF_EXIT_USAGE;
  }
  if (in.iface && in.duration <= 0) {
    fprintf(stderr, "calc-sniff verify: a live verification needs --duration S\n");
    return SNIFF_EXIT_USAGE;
  }
  if (!gso.server_port) gso.server_port = so.server_port;
  if (!gso.proxy_port) gso.proxy_port = so.proxy_port;
  return run_verify(&in, &so, &gso, golden, mode);
}
