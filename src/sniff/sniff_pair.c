/* sniff_pair.c: the downstream connections of a golden analysis and of a capture's, paired for
 * their comparison (sniff_pair.h). */
#include "sniff_pair.h"

#include <stdlib.h>
#include <string.h>

#include "calc/alloc.h"
#include "sniff_trace.h"

bool pair_list_build(pair_list *l, const sniff_red *r) {
  memset(l, 0, sizeof *l);
  const sniff_an *an = r->an;
  l->c = calc_calloc((size_t)an->nconns + 1, sizeof *l->c);
  l->sig = calc_calloc((size_t)an->nconns + 1, sizeof *l->sig);
  l->match = calc_calloc((size_t)an->nconns + 1, sizeof *l->match);
  if (!l->c || !l->sig || !l->match) return false;
  calc_buf b;
  calc_buf_init(&b, 0);
  bool ok = true;
  for (uint32_t i = 0; i < an->nconns && ok; i++) {
    if (!sniff_downstream(&an->conns[i])) continue;
    calc_buf_reset(&b);
    sniff_trace_conn(r, &an->conns[i], "", &b);
    l->c[l->n] = &an->conns[i];
    l->match[l->n] = -1;
    l->sig[l->n] = calc_strndup(b.data ? (const char *)b.data : "", b.len);
    ok = l->sig[l->n++] != NULL;
  }
  ok = ok && !b.failed;
  calc_buf_free(&b);
  return ok;
}

void pair_list_free(pair_list *l) {
  for (uint32_t i = 0; l->sig && i < l->n; i++) calc_free(l->sig[i]);
  calc_free(l->c);
  calc_free(l->sig);
  calc_free(l->match);
}

/* The capture's connections sorted by signature (then position): a golden connection finds the
 * first unpaired capture connection with its behaviour by a binary search, not a scan of them
 * all, so pairing costs O(n log n) however many connections differ. */
typedef struct sig_ref {
  const char *sig;
  uint32_t pos;             /* index in the capture's list */
} sig_ref;
typedef struct sig_index {
  sig_ref *ref;
  uint32_t *next;           /* at the first slot of a run of equal signatures: the run's first
                             * slot that may still be unpaired (the slots before it are paired) */
  uint32_t n;
} sig_index;

static int cmp_sig_ref(const void *a, const void *b) {
  const sig_ref *x = a, *y = b;
  int d = strcmp(x->sig, y->sig);
  return d ? d : (x->pos > y->pos) - (x->pos < y->pos);
}

static bool sig_index_build(sig_index *ix, const pair_list *C) {
  ix->n = C->n;
  ix->ref = calc_calloc((size_t)C->n + 1, sizeof *ix->ref);
  ix->next = calc_calloc((size_t)C->n + 1, sizeof *ix->next);
  if (!ix->ref || !ix->next) return false;
  for (uint32_t j = 0; j < C->n; j++) {
    ix->ref[j].sig = C->sig[j];
    ix->ref[j].pos = j;
    ix->next[j] = j;
  }
  qsort(ix->ref, C->n, sizeof *ix->ref, cmp_sig_ref);
  return true;
}

static void sig_index_free(sig_index *ix) {
  calc_free(ix->ref);
  calc_free(ix->next);
}

/* The first capture connection (lowest position) that is unpaired and has signature sig, or -1. */
static int32_t sig_index_first_unpaired(sig_index *ix, const pair_list *C, const char *sig) {
  uint32_t lo = 0, hi = ix->n;  /* the run of sig starts at the first slot not below it */
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (strcmp(ix->ref[mid].sig, sig) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo == ix->n || strcmp(ix->ref[lo].sig, sig)) return -1;
  /* the run's connections are paired in any order (the same position is tried first), but
   * once paired they stay so: the run's cursor only moves forward */
  uint32_t k = ix->next[lo];
  while (k < ix->n && C->match[ix->ref[k].pos] >= 0 && !strcmp(ix->ref[k].sig, sig)) k++;
  ix->next[lo] = k;
  return k < ix->n && !strcmp(ix->ref[k].sig, sig) ? (int32_t)ix->ref[k].pos : -1;
}

bool pair_lists(pair_list *G, pair_list *C) {
  sig_index ix;
  bool *leftover = calc_calloc((size_t)G->n + 1, sizeof *leftover);
  bool ok = sig_index_build(&ix, C) && leftover;
  for (uint32_t i = 0; ok && i < G->n; i++) {
    bool same_place = i < C->n && C->match[i] < 0 && !strcmp(G->sig[i], C->sig[i]);
    int32_t k = same_place ? (int32_t)i : sig_index_first_unpaired(&ix, C, G->sig[i]);
    if (k < 0) continue;
    G->match[i] = k;
    C->match[k] = (int32_t)i;
  }
  sig_index_free(&ix);
  uint32_t j = 0, nleft = 0;
  for (uint32_t i = 0; ok && i < G->n; i++) {
    if (G->match[i] >= 0) continue;
    while (j < C->n && C->match[j] >= 0) j++;
    if (j >= C->n) break;
    G->match[i] = (int32_t)j;
    C->match[j] = (int32_t)i;
    leftover[i] = true;
    nleft++;
  }
  /* A pair made in order must not reverse two golden connections the script ran one after
   * the other: when a capture connection behaved as the golden's next one (a race in the
   * program, say), the leftover takes the earlier capture connection, and the differences
   * show in the checks of each connection rather than as an order the clients never had.
   * Adjacent swaps, bounded: each removes one inversion. */
  for (uint32_t pass = 0; ok && nleft && pass < 64; pass++) {
    bool swapped = false;
    for (uint32_t i = 0; i + 1 < G->n; i++) {
      int32_t a = G->match[i], b = G->match[i + 1];
      if (a < 0 || b < 0 || a < b || !(leftover[i] || leftover[i + 1])) continue;
      if (G->c[i]->ts_last >= G->c[i + 1]->ts_first) continue;  /* overlapping: any order */
      G->match[i] = b;
      G->match[i + 1] = a;
      C->match[b] = (int32_t)i;
      C->match[a] = (int32_t)(i + 1);
      leftover[i] = leftover[i + 1] = true;
      swapped = true;
    }
    if (!swapped) break;
  }
  calc_free(leftover);
  return ok;
}
