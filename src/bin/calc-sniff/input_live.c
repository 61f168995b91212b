/* input_live.c: live capture with libpcap (pcap_create, a BPF filter on the ports), until
 * --duration passes or SIGINT/SIGTERM arrives. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "obuf.h"
#include "sniff_cli.h"

/* Live capture: a loopback burst of the benchmark load fits easily in 64 MiB of kernel buffer
 * (-B sets another: the kernel zeroes the whole ring when the capture opens, 64 MiB costs about
 * 20 ms of CPU, too much for a one-scenario run of a few dozen packets);
 * snaplen 262144 keeps whole 64 KiB loopback segments (lo's MTU is 65536). */
#define LIVE_BUFFER (64 << 20)
#define LIVE_SNAPLEN 262144
#define LIVE_POLL_MS 100

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* What the capture loop hands each packet to: the run, and the count of packets stamped from
 * `since` on, which the drain compares with the kernel's count (kernel_kept). */
typedef struct {
  run *r;
  struct timeval since;
  uint64_t fresh;
} live_feed;

static void pcap_cb(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  live_feed *f = (live_feed *)user;
  handle_frame(f->r, h, bytes);
  if (timercmp(&h->ts, &f->since, >=)) f->fresh++;
}

/* Packets the kernel has put into the capture buffer (passed the filter, not dropped), or -1
 * when it cannot tell. */
static int64_t kernel_kept(pcap_t *p) {
  struct pcap_stat st;
  if (pcap_stats(p, &st) != 0) return -1;
  return (int64_t)st.ps_recv - (int64_t)st.ps_drop;
}

/* Whether `iface` is a loopback interface: there the kernel hands the capture each packet twice,
 * as sent and as received, and libpcap keeps only the received copy. */
static bool is_loopback(const char *iface) {
  pcap_if_t *all = NULL;
  char err[PCAP_ERRBUF_SIZE];
  bool lo = false;
  if (pcap_findalldevs(&all, err) != 0) return false;
  for (pcap_if_t *d = all; d; d = d->next)
    if (strcmp(d->name, iface) == 0) lo = (d->flags & PCAP_IF_LOOPBACK) != 0;
  pcap_freealldevs(all);
  return lo;
}

/* Whether the capture has read every packet the kernel kept since `kept_before`: on loopback
 * half of them, rounded up, since a packet's sent copy is counted before its received one. */
static bool all_read(const live_feed *f, int64_t kept_before, int64_t kept, bool loopback) {
  if (kept_before < 0 || kept < 0) return false;
  uint64_t due = (uint64_t)(kept - kept_before);
  if (loopback) due = (due + 1) / 2;
  return f->fresh >= due;
}

static int write_ready(const char *path, const char *iface) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "ready %s %ld\n", iface, (long)getpid());
  if (fclose(f) != 0) return -1;
  return rename(tmp, path);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Live capture until --duration passes or a signal arrives. 0, or -1 with a message. */
int capture_live(const input *in, run *r) {
  char err[PCAP_ERRBUF_SIZE] = "";
  const char *iface = in->iface ? in->iface : "lo";
  pcap_t *p = pcap_create(iface, err);
  if (!p) {
    fprintf(stderr, "calc-sniff: %s: %s\n", iface, err);
    return -1;
  }
  pcap_set_snaplen(p, LIVE_SNAPLEN);
  pcap_set_promisc(p, 0);
  /* Not immediate mode: that forces TPACKET_V2, whose ring has one fixed slot per packet sized
   * for the interface MTU (64 KiB on lo), so 64 MiB held about a thousand packets and the
   * kernel dropped under full benchmark load. TPACKET_V3 packs packets into blocks that are
   * handed over when full or after LIVE_POLL_MS (the timeout below), so the same buffer holds
   * hundreds of thousands of small segments; the stop below waits out one more block timeout. */
  pcap_set_immediate_mode(p, 0);
  pcap_set_buffer_size(p, in->buffer_kib ? (int)in->buffer_kib * 1024 : LIVE_BUFFER);
  pcap_set_timeout(p, LIVE_POLL_MS);
  int a = pcap_activate(p);
  if (a < 0) {
    fprintf(stderr, "calc-sniff: %s: cannot capture: %s\n", iface,
            a == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(a));
    pcap_close(p);
    return -1;
  }
  if (check_dlt(p, iface, r) < 0) {
    pcap_close(p);
    return -1;
  }
  char filter[512];
  size_t l = (size_t)snprintf(filter, sizeof filter, "tcp and (");
  for (int i = 0; i < in->nports; i++)
    l += (size_t)snprintf(filter + l, sizeof filter - l, "%sport %u", i ? " or " : "", in->ports[i]);
  snprintf(filter + l, sizeof filter - l, ")");
  struct bpf_program prog;
  if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0 || pcap_setfilter(p, &prog) < 0) {
    fprintf(stderr, "calc-sniff: filter \"%s\": %s\n", filter, pcap_geterr(p));
    pcap_close(p);
    return -1;
  }
  pcap_freecode(&prog);
  if (open_dumper(p, in, r) < 0 || pcap_setnonblock(p, 1, err) < 0) {
    if (!r->dumper) fprintf(stderr, "calc-sniff: %s\n", err);
    pcap_close(p);
    return -1;
  }
  int fd = pcap_get_selectable_fd(p);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* The handle is active and filtered: from here on no packet of the scenario is missed. The
   * kernel's count from here on and the packets stamped after it tell the drain when it has read
   * them all (a packet stamped before `since` is not counted as read, so at worst it drains on
   * to its time limit). */
  live_feed feed = {r, {0, 0}, 0};
  bool loopback = is_loopback(iface);
  int64_t kept_before = kernel_kept(p);
  gettimeofday(&feed.since, NULL);
  fprintf(stderr, "calc-sniff: capturing on %s, filter \"%s\"\n", iface, filter);
  if (in->ready_file && write_ready(in->ready_file, iface) < 0) {
    fprintf(stderr, "calc-sniff: %s: %s\n", in->ready_file, strerror(errno));
    pcap_close(p);
    return -1;
  }
  r->live = true;
  double deadline = in->duration > 0 ? now_s() + in->duration : 0;
  int rc = 0;
  while (!g_stop) {
    int wait = LIVE_POLL_MS;
    if (deadline) {
      double left = deadline - now_s();
      if (left <= 0) break;
      if (left * 1000 < wait) wait = (int)(left * 1000) + 1;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    if (fd >= 0) poll(&pfd, 1, wait); else usleep((useconds_t)wait * 1000);
    if (pcap_dispatch(p, -1, pcap_cb, (u_char *)&feed) == PCAP_ERROR) {
      fprintf(stderr, "calc-sniff: %s: %s\n", iface, pcap_geterr(p));
      rc = -1;
      break;
    }
    if (r->ob) {  /* live: packet lines appear as they come, not per 64 KiB */
      ob_flush(r->ob);
      fflush(r->out);
    }
  }
  /* Drain: the block being filled is handed over only at its timeout, so the packets that
   * arrived just before the stop may still be on their way. Read until every packet the kernel
   * kept since the capture became active has been read, for one more timeout (plus a margin)
   * at most. */
  double drain_until = now_s() + (LIVE_POLL_MS + 150) / 1000.0;
  while (rc == 0 && now_s() < drain_until) {
    if (all_read(&feed, kept_before, kernel_kept(p), loopback)) break;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (fd >= 0) poll(&pfd, 1, 20); else usleep(20000);
    if (pcap_dispatch(p, -1, pcap_cb, (u_char *)&feed) == PCAP_ERROR) break;
  }
  struct pcap_stat st;
  if (pcap_stats(p, &st) == 0) {
    r->drops = (uint64_t)st.ps_drop + st.ps_ifdrop;
    fprintf(stderr, "calc-sniff: %u packets received by filter, %" PRIu64 " dropped by kernel\n",
            st.ps_recv, r->drops);
  }
  if (r->dumper) pcap_dump_close(r->dumper);
  r->dumper = NULL;
  pcap_close(p);
  return rc;
}
