/* pcap_readloop: the bare libpcap read loop calc-sniff's benchmark compares against
 * (tests/bench/sniff_bench.sh): open, pcap_next_ex every record, touch its bytes, count.
 * usage: pcap_readloop FILE */
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pcap_readloop FILE\n");
    return 2;
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t *p = pcap_open_offline(argv[1], err);
  if (!p) {
    fprintf(stderr, "pcap_readloop: %s: %s\n", argv[1], err);
    return 2;
  }
  struct pcap_pkthdr *h;
  const u_char *b;
  uint64_t n = 0, bytes = 0;
  unsigned sum = 0;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &b)) == 1) {
    n++;
    bytes += h->caplen;
    if (h->caplen) sum += b[h->caplen - 1];  /* touch the packet like a parser would */
  }
  if (rc != PCAP_ERROR_BREAK) fprintf(stderr, "pcap_readloop: %s\n", pcap_geterr(p));
  pcap_close(p);
  printf("%llu packets, %llu bytes (checksum %u)\n", (unsigned long long)n,
         (unsigned long long)bytes, sum);
  return rc == PCAP_ERROR_BREAK ? 0 : 2;
}
