/* calc-client: sends one expression, prints the answer exactly as the reference client does
 * (docs/protocol.md section 4). One request per connection; the client closes first, so its FIN
 * leads the teardown as in the report's captures. With --close-wait it first gives the other
 * side that long to close: a grader's way to make a program that closes before its client show
 * it every time, instead of when it happens to run before the client.
 * Exit status: 0 a 200 answer, 1 a 400/500 answer, 2 usage, connection or protocol errors. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "calc/alloc.h"
#include "calc/eval.h"
#include "calc/parse.h"
#include "calc/pickle.h"
#include "calc/server.h"
#include "calc/wire.h"
#include "peer_close.h"
#include "sock.h"
#include "util.h"

typedef struct options {
  const char *host;
  int port;
  bool steps, cache, json, local;
  uint16_t max_age;
  int timeout_ms;
  calc_pickle_flavour flavour;
  int close_wait_ms;
  const char *expr;
} options;

static char prefix[300]; /* "{127.0.0.1:9999}" */
static const char *local_expr = ""; /* --local: the expression as printed, for --json */

static void usage(FILE *f) {
  fprintf(f,
          "Usage: calc-client [OPTIONS] [--] EXPRESSION\n"
          "Sends EXPRESSION to a calculator server or proxy and prints the result and its steps.\n\n"
          "  -H, --host HOST     server or proxy address (default 127.0.0.1)\n"
          "  -p, --port PORT     server or proxy port (default 9999)\n"
          "      --no-steps      do not ask for the evaluation steps\n"
          "      --no-cache      forbid cached answers (C flag clear, max-age 0)\n"
          "      --max-age N     accept a cached answer at most N seconds old (default 65535 =\n"
          "                      forever; 0 forces a reload)\n"
          "      --timeout S     give up after S seconds without an answer (default 30)\n"
          "      --close-wait MS once the answer is read, wait up to MS milliseconds for the\n"
          "                      other side to close first (default 0: close at once, as the\n"
          "                      reference client; the other side's FIN ends the wait)\n"
          "      --json          print one JSON object instead of the reference's lines\n"
          "      --local         no connection: the request is answered here by calc-server's own\n"
          "                      rules (the answer a server gives it, printed as above)\n"
          "      --pickle-flavour value|getattr\n"
          "                      how the request pickles the operators' Associativity enum members:\n"
          "                      'value' (default) as CPython 3.9-3.10 and 3.11.7+ do,\n"
          "                      Associativity(0); 'getattr' as CPython 3.11.2 (Debian 12's\n"
          "                      python3) does, getattr(Associativity, 'LEFT'). The bytes are the\n"
          "                      reference client's under that Python (E1: 687 or 706 bytes)\n"
          "  -h, --help          show this help\n\n"
          "Functions: sin cos tan sqrt log max min pow rand; constants: pi tau e;\n"
          "operators: + - * / %% ** with Python's precedence. Quote the expression for the shell.\n"
          "Exit status: 0 result, 1 error answer (400/500), 2 usage or connection error.\n");
}

static void json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* Waits for fd to be ready for `events` within the deadline. 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = events};
  int rc;
  do rc = poll(&p, 1, timeout_ms); while (rc < 0 && errno == EINTR);
  return rc;
}

static int connect_to(const options *o, char *err, size_t errsize) {
  sock_addr a;
  char msg[200];
  if (sock_resolve(o->host, o->port, &a, msg, sizeof msg) < 0) {
    snprintf(err, errsize, "cannot connect to %s:%d: %s", o->host, o->port, msg);
    return -1;
  }
  int fd = sock_connect_nonblock(&a);
  if (fd >= 0) {
    int rc = wait_fd(fd, POLLOUT, o->timeout_ms);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (rc == 0) soerr = ETIMEDOUT;
    else if (rc < 0) soerr = errno;
    else getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == 0) return fd;
    close(fd);
    errno = soerr;
  }
  snprintf(err, errsize, "cannot connect to %s:%d: %s", o->host, o->port, strerror(errno));
  return -1;
}

static int send_all(int fd, const uint8_t *p, size_t n, int timeout_ms) {
  /* One send call carries the whole request (one PSH segment); loop only if the kernel splits. */
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && wait_fd(fd, POLLOUT, timeout_ms) > 0) continue;
      return -1;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Reads one whole message (framed by its total length) into out. 0, or -1 with err set. */
static int read_message(int fd, calc_buf *out, int timeout_ms, char *err, size_t errsize) {
  calc_header h;
  for (;;) {
    ssize_t need = calc_frame_parse(out->data, out->len, &h);
    if (need > 0) {
      out->len = (size_t)need;
      return 0;
    }
    if (need == -1) {
      snprintf(err, errsize, "the response has an invalid total length (%u)", h.total_len);
      return -1;
    }
    int rc = wait_fd(fd, POLLIN, timeout_ms);
    if (rc == 0) {
      snprintf(err, errsize, "no complete response within %d s (%zu bytes received)", timeout_ms / 1000, out->len);
      return -1;
    }
    if (calc_buf_reserve(out, 65536) < 0) {
      snprintf(err, errsize, "out of memory");
      return -1;
    }
    ssize_t k = recv(fd, out->data + out->len, 65536, 0);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      snprintf(err, errsize, "%s", strerror(errno));
      return -1;
    }
    if (k == 0) {
      snprintf(err, errsize, "the connection closed after %zu bytes of the response", out->len);
      return -1;
    }
    out->len += (size_t)k;
  }
}

/* A 200 payload must be (int|float, [str, ...]). */
static bool valid_result(const calc_pyobj *o) {
  if (!o || o->kind != CALC_PY_TUPLE || o->n != 2) return false;
  const calc_pyobj *r = o->items[0], *s = o->items[1];
  if (r->kind != CALC_PY_INT && r->kind != CALC_PY_FLOAT) return false;
  if (s->kind != CALC_PY_LIST) return false;
  for (size_t i = 0; i < s->n; i++)
    if (s->items[i]->kind != CALC_PY_STR) return false;
  return true;
}

static void print_steps(const calc_pyobj *steps) {
  if (steps->n == 0) return;
  printf("Steps:\n");
  const calc_pyobj *first = steps->items[0];
  if (steps->n == 1) {
    printf("%.*s\n", (int)first->len, first->str);
    return;
  }
  printf("%.*s = %.*s\n", (int)first->len, first->str, (int)steps->items[1]->len, steps->items[1]->str);
  for (size_t i = 2; i < steps->n; i++)
    printf("%*s = %.*s\n", (int)first->len, "", (int)steps->items[i]->len, steps->items[i]->str);
}

/* Prints the answer; returns the exit status. */
static int report(const options *o, const calc_header *h, const uint8_t *payload, size_t len,
                  size_t req_len, size_t resp_len, const calc_answer_info *local) {
  calc_pyobj *obj = NULL;
  calc_exc exc;
  bool decoded = calc_unpickle_response(payload, len, &obj, &exc) == 0;
  calc_buf text;
  calc_buf_init(&text, 0);
  int status;
  const char *kind;
  if (h->status == 200 && decoded && valid_result(obj) && obj->items[0]->kind == CALC_PY_INT &&
      calc_num_str_too_long(&obj->items[0]->num)) {
    /* The reference client's print(f"Result: {result}") raises CPython's ValueError here. */
    calc_buf_puts(&text, CALC_PY_INT_STR_LIMIT_MSG);
    kind = "unexpected";
    status = 2;
  } else if (h->status == 200 && decoded && valid_result(obj)) {
    calc_pyobj_str(obj->items[0], &text);
    kind = "result";
    status = 0;
  } else if ((h->status == 400 || h->status == 500) && decoded) {
    calc_pyobj_str(obj, &text);
    kind = "error";
    status = 1;
  } else {
    calc_buf_puts(&text, !decoded ? exc.msg : "Received data is not a valid result");
    kind = "unexpected";
    status = 2;
  }
  if (o->json) {
    printf("{\"status\":%u,\"request_bytes\":%zu,\"response_bytes\":%zu,\"%s\":", h->status, req_len,
           resp_len, kind);
    json_string(stdout, (const char *)text.data, text.len);
    if (status == 0) {
      printf(",\"type\":\"%s\",\"steps\":[", obj->items[0]->kind == CALC_PY_INT ? "int" : "float");
      const calc_pyobj *s = obj->items[1];
      for (size_t i = 0; i < s->n; i++) {
        if (i) putchar(',');
        json_string(stdout, s->items[i]->str, s->items[i]->len);
      }
      putchar(']');
    } else if (status == 1 && obj->kind == CALC_PY_EXC) {
      printf(",\"error_type\":");
      json_string(stdout, obj->name, strlen(obj->name));
    }
    /* only --local knows whether another evaluation could answer otherwise (rand), and the
     * request's expression as the server prints it (what a capture's decoder shows) */
    if (local) {
      printf(",\"deterministic\":%s,\"expression\":", local->deterministic ? "true" : "false");
      json_string(stdout, local_expr, strlen(local_expr));
    }
    printf(",\"cached_max_age\":%u}\n", h->cache_control);
  } else if (status == 0) {
    printf("Result: %.*s\n", (int)text.len, (const char *)text.data);
    print_steps(obj->items[1]);
  } else if (status == 1) {
    printf("%s Got error: %.*s\n", prefix, (int)text.len, (const char *)text.data);
  } else {
    printf("%s Unexpected error: %.*s\n", prefix, (int)text.len, (const char *)text.data);
  }
  calc_buf_free(&text);
  calc_pyobj_free(obj);
  return status;
}

/* --local: what the client prints for the answer calc-server would send to this request, with
 * no server and no connection (the lab's oracle for a scenario's expected printouts). The
 * length lines keep the reference's form, the prefix names no address. */
static int answer_here(const options *o, const calc_tree *tree, const calc_buf *request) {
  calc_framer f;
  calc_framer_init(&f, 0);
  calc_msg m;
  calc_buf response;
  calc_buf_init(&response, 0);
  calc_answer_info info;
  calc_server_opts so = {.no_cache = false, .cache_control = CALC_CACHE_FOREVER};
  calc_buf printed;
  calc_buf_init(&printed, 0);
  int rc = 2;
  if (calc_expr_print(tree->root, &printed) < 0 || calc_buf_putc(&printed, '\0') < 0 ||
      calc_framer_feed(&f, request->data, request->len) < 0 || calc_framer_next(&f, &m) != 1 ||
      calc_server_answer(&so, &m, (uint32_t)time(NULL), &response, &info) < 0) {
    fprintf(stderr, "calc-client: out of memory\n");
    goto out;
  }
  local_expr = (const char *)printed.data;
  calc_header h;
  calc_header_decode(response.data, response.len, &h);
  if (!o->json) {
    printf("%s Connection established\n", prefix);
    printf("%s Sending request of length %zu bytes\n", prefix, request->len);
    printf("%s Got response of length %zu bytes\n", prefix, response.len);
  }
  rc = report(o, &h, response.data + CALC_HEADER_SIZE, response.len - CALC_HEADER_SIZE, request->len,
              response.len, &info);
  if (!o->json) printf("%s Connection closed\n", prefix);
out:
  calc_buf_free(&printed);
  calc_buf_free(&response);
  calc_framer_free(&f);
  return rc;
}

static void parse_args(int argc, char **argv, options *o) {
  enum { OPT_NOSTEPS = 256, OPT_NOCACHE, OPT_MAXAGE, OPT_TIMEOUT, OPT_JSON, OPT_LOCAL, OPT_FLAVOUR, OPT_CLOSEWAIT };
  static const struct option opts[] = {
      {"host", required_argument, 0, 'H'},          {"port", required_argument, 0, 'p'},
      {"no-steps", no_argument, 0, OPT_NOSTEPS},     {"no-cache", no_argument, 0, OPT_NOCACHE},
      {"max-age", required_argument, 0, OPT_MAXAGE}, {"timeout", required_argument, 0, OPT_TIMEOUT},
      {"json", no_argument, 0, OPT_JSON},            {"help", no_argument, 0, 'h'},
      {"local", no_argument, 0, OPT_LOCAL},          {"pickle-flavour", required_argument, 0, OPT_FLAVOUR},
      {"close-wait", required_argument, 0, OPT_CLOSEWAIT},
      {0, 0, 0, 0}};
  int c;
  /* "+" stops at the first non-option so "-2 * 3" after "--" or as the expression works. */
  while ((c = getopt_long(argc, argv, "+H:p:h", opts, NULL)) != -1) {
    switch (c) {
      case 'H': o->host = optarg; break;
      case 'p': o->port = (int)util_parse_long("calc-client", "--port", optarg, 1, 65535); break;
      case OPT_NOSTEPS: o->steps = false; break;
      case OPT_NOCACHE: o->cache = false; break;
      case OPT_MAXAGE: o->max_age = (uint16_t)util_parse_long("calc-client", "--max-age", optarg, 0, 65535); break;
      case OPT_TIMEOUT: o->timeout_ms = 1000 * (int)util_parse_long("calc-client", "--timeout", optarg, 1, 86400); break;
      case OPT_JSON: o->json = true; break;
      case OPT_LOCAL: o->local = true; break;
      case OPT_FLAVOUR:
        if (strcmp(optarg, "value") == 0) {
          o->flavour = CALC_PICKLE_BY_VALUE;
        } else if (strcmp(optarg, "getattr") == 0) {
          o->flavour = CALC_PICKLE_GETATTR;
        } else {
          fprintf(stderr, "calc-client: --pickle-flavour takes value or getattr, not '%s'\n", optarg);
          usage(stderr);
          exit(2);
        }
        break;
      case OPT_CLOSEWAIT: o->close_wait_ms = (int)util_parse_long("calc-client", "--close-wait", optarg, 0, 60000); break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, argc == optind ? "calc-client: missing EXPRESSION\n"
                                   : "calc-client: give the expression as one argument (quote it)\n");
    usage(stderr);
    exit(2);
  }
  o->expr = argv[optind];
}

int main(int argc, char **argv) {
  options o = {.host = "127.0.0.1", .port = 9999, .steps = true, .cache = true,
               .max_age = CALC_CACHE_FOREVER, .timeout_ms = 30000, .flavour = CALC_PICKLE_BY_VALUE};
  parse_args(argc, argv, &o);
  calc_alloc_init();
  signal(SIGPIPE, SIG_IGN);
  if (o.local) snprintf(prefix, sizeof prefix, "{local}");
  else snprintf(prefix, sizeof prefix, "{%s:%d}", o.host, o.port);

  calc_tree tree = {0};
  calc_parse_error perr;
  if (calc_parse(o.expr, strlen(o.expr), &tree, &perr) < 0) {
    fprintf(stderr, "calc-client: %s\n", perr.msg);
    return 2;
  }
  calc_buf payload, request, response;
  calc_buf_init(&payload, 0);
  calc_buf_init(&request, 0);
  calc_buf_init(&response, 0);
  int rc = 2;
  if (calc_pickle_request_flavour(&tree, o.flavour, &payload) < 0 || payload.len > CALC_MAX_PAYLOAD) {
    fprintf(stderr, "calc-client: the expression does not fit one message (%zu bytes of payload, at most %u)\n",
            payload.len, CALC_MAX_PAYLOAD);
    goto out;
  }
  calc_message_build(&request, (uint32_t)time(NULL), true, 0, o.cache, o.steps,
                     o.cache ? o.max_age : 0, payload.data, payload.len);

  if (o.local) {
    rc = answer_here(&o, &tree, &request);
    goto out;
  }
  char err[300];
  int fd = connect_to(&o, err, sizeof err);
  if (fd < 0) {
    fprintf(stderr, "calc-client: %s\n", err);
    goto out;
  }
  if (!o.json) printf("%s Connection established\n", prefix);
  if (send_all(fd, request.data, request.len, o.timeout_ms) < 0) {
    snprintf(err, sizeof err, "%s", strerror(errno));
    if (!o.json) printf("%s Unexpected error: %s\n", prefix, err);
    else fprintf(stderr, "calc-client: %s\n", err);
  } else {
    if (!o.json) printf("%s Sending request of length %zu bytes\n", prefix, request.len);
    if (read_message(fd, &response, o.timeout_ms, err, sizeof err) < 0) {
      if (!o.json) printf("%s Unexpected error: %s\n", prefix, err);
      else fprintf(stderr, "calc-client: %s\n", err);
    } else {
      calc_header h;
      calc_header_decode(response.data, response.len, &h);
      if (!o.json) printf("%s Got response of length %zu bytes\n", prefix, response.len);
      rc = report(&o, &h, response.data + CALC_HEADER_SIZE, response.len - CALC_HEADER_SIZE,
                  request.len, response.len, NULL);
      fflush(stdout);
      if (o.close_wait_ms) calc_wait_peer_close(fd, o.close_wait_ms);
    }
  }
  close(fd);
  if (!o.json) printf("%s Connection closed\n", prefix);
out:
  calc_buf_free(&payload);
  calc_buf_free(&request);
  calc_buf_free(&response);
  calc_tree_free(&tree);
  return rc;
}
