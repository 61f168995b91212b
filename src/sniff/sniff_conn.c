/* sniff_conn.c: the analyzer's lifetime, and what a connection is: role and teardown names,
 * Zeek's conn_state, the teardown class, whether bytes are missing. */
#include <stdio.h>
#include <string.h>

#include "calc/alloc.h"
#include "sniff_int.h"

void sniff_opts_default(sniff_opts *o) {
  memset(o, 0, sizeof *o);
  o->server_port = 9999;
  o->proxy_port = 9998;
  o->decode = true;
}

const char *sniff_role_name(sniff_role r) {
  switch (r) {
    case SNIFF_ROLE_OTHER: return "other";
    case SNIFF_ROLE_CLIENT_SERVER: return "client->server";
    case SNIFF_ROLE_CLIENT_PROXY: return "client->proxy";
    case SNIFF_ROLE_PROXY_SERVER: return "proxy->server";
  }
  return "?";
}

const char *sniff_end_name(sniff_end e) {
  switch (e) {
    case SNIFF_END_OPEN: return "open";
    case SNIFF_END_FIN_CLIENT: return "fin-client";
    case SNIFF_END_FIN_SERVER: return "fin-server";
    case SNIFF_END_RST_CLIENT: return "rst-client";
    case SNIFF_END_RST_SERVER: return "rst-server";
    case SNIFF_END_REFUSED: return "refused";
  }
  return "?";
}

void sniff_an_init(sniff_an *an, const sniff_opts *o) {
  memset(an, 0, sizeof *an);
  if (o) an->o = *o; else sniff_opts_default(&an->o);
}

void sniff_dir_free(sniff_dir *d) {
  if (d->ro) calc_buf_free(&d->ro->buf);
  calc_free(d->ro);
  d->ro = NULL;
  d->nooo = 0;
  if (d->payload) calc_buf_free(d->payload);
  calc_free(d->payload);
  d->payload = NULL;
}

void sniff_an_free(sniff_an *an) {
  for (uint32_t i = 0; i < an->nconns; i++) {
    sniff_dir_free(&an->conns[i].d[0]);
    sniff_dir_free(&an->conns[i].d[1]);
  }
  sniff_array_free(&an->conn_store);
  calc_free(an->slots);
  sniff_array_free(&an->msg_store);
  calc_free(an->pending);
  calc_free(an->fresh);
  calc_free(an->finish);
  sniff_text_free(an->tc);
  memset(an, 0, sizeof *an);
}

/* Zeek's conn_state (base/protocols/conn/main.zeek). */
const char *sniff_conn_state(const sniff_conn *c) {
  const sniff_dir *o = &c->d[0], *r = &c->d[1];
  if (c->syn && !c->synack) {
    if (r->rst) return "REJ";
    if (o->rst) return "RSTOS0";
    if (o->fin) return "SH";
    return "S0";
  }
  if (!c->syn && c->synack) {
    if (r->rst) return "RSTRH";
    if (r->fin) return "SHR";
    return "OTH";
  }
  if (!c->syn) return "OTH";
  if (c->first_rst == 0) return "RSTO";
  if (c->first_rst == 1) return "RSTR";
  if (o->fin && r->fin) return "SF";
  if (o->fin) return "S2";
  if (r->fin) return "S3";
  return "S1";
}

sniff_end sniff_conn_end(const sniff_conn *c) {
  if (c->syn && !c->synack && c->first_rst == 1) return SNIFF_END_REFUSED;
  if (c->first_rst >= 0 && (c->first_fin < 0 || c->d[c->first_fin].fin_ts > c->d[c->first_rst].rst_ts))
    return c->first_rst == 0 ? SNIFF_END_RST_CLIENT : SNIFF_END_RST_SERVER;
  if (c->first_fin == 0) return SNIFF_END_FIN_CLIENT;
  if (c->first_fin == 1) return SNIFF_END_FIN_SERVER;
  return SNIFF_END_OPEN;
}

bool sniff_conn_lossy(const sniff_conn *c) {
  for (int i = 0; i < 2; i++)
    if (c->d[i].gap_bytes || c->d[i].trunc_bytes || c->d[i].desync) return true;
  return false;
}

