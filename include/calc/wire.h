/* calc/wire.h: the 12-byte message header and an incremental framer (docs/protocol.md section 1).
 *
 *   0               1               2               3
 *   0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
 *  +---------------------------------------------------------------+
 *  |                  time stamp (unix seconds)                    |
 *  +-------------------------------+-------------------------------+
 *  |   total length (12..65535)    | R R R C S T   status (10 bits)|
 *  +-------------------------------+-------------------------------+
 *  |   cache control (seconds)     |        padding (0)            |
 *  +-------------------------------+-------------------------------+
 *  C = cache, S = steps, T = 1 request / 0 response; all fields big-endian.
 *
 * Everything here is I/O-free: bytes in, structs out. */
#ifndef CALC_WIRE_H
#define CALC_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "calc/buf.h"
#include "calc/limits.h"

#define CALC_FLAG_CACHE   0x1000u
#define CALC_FLAG_STEPS   0x0800u
#define CALC_FLAG_REQUEST 0x0400u
#define CALC_FLAG_RESERVED 0xe000u
#define CALC_STATUS_MASK  0x03ffu
#define CALC_CACHE_FOREVER 65535u

typedef struct calc_header {
  uint32_t time;
  uint16_t total_len;     /* header included */
  bool cache, steps, is_request;
  uint8_t reserved;       /* the 3 reserved bits as received (the reference only warns) */
  uint16_t status;        /* 0 in requests; 200/400/500 in responses */
  uint16_t cache_control;
} calc_header;

/* The reference's normalisation, applied to every header built or unpacked:
 * cache control != 0 without C -> 0; in a response, cache control == 0 with C -> C clear. */
void calc_header_normalize(calc_header *h);
/* Writes 12 bytes (normalising a copy of h first; padding and reserved bits sent as 0). */
void calc_header_encode(const calc_header *h, uint8_t out[CALC_HEADER_SIZE]);
/* Reads 12 bytes from buf into h and normalises. Returns 12, or -2 if len < 12. Does not
 * judge total_len: see calc_frame_parse. */
ssize_t calc_header_decode(const uint8_t *buf, size_t len, calc_header *h);

/* Appends one whole message to out: a header (time stamp now, request or response with its
 * status, the C and S flags, cache control; normalised as calc_header_encode does) and the
 * payload. 0, or -1 when the payload cannot fit one message (over CALC_MAX_PAYLOAD: nothing
 * appended) or out cannot grow (out->failed). */
int calc_message_build(calc_buf *out, uint32_t now, bool is_request, uint16_t status, bool cache,
                       bool steps, uint16_t cache_control, const uint8_t *payload, size_t len);

/* Framing by total length (picohttpparser's convention).
 * Returns the length of the first whole message in buf (header+payload, >= 12), -2 when more
 * bytes are needed, or -1 when the header's total length is under 12 (h is still filled so the
 * caller can quote it). Never reads past buf[len). */
ssize_t calc_frame_parse(const uint8_t *buf, size_t len, calc_header *h);

/* An incremental framer: feed bytes as they arrive, take whole messages out.
 *
 * Framing costs time linear in the bytes: a message taken out only advances an offset, and the
 * bytes not yet taken are moved to the front once per feed, never once per message (moving the
 * rest after every message made a burst of N pipelined messages cost N times its size). */
typedef struct calc_framer {
  calc_buf in;        /* received bytes; those before `off` have been handed out */
  size_t off;         /* start of the first byte not yet handed out */
} calc_framer;

typedef struct calc_msg {
  calc_header h;
  const uint8_t *payload;   /* points into the framer; valid until the next calc_framer_feed */
  size_t payload_len;
  const uint8_t *raw;       /* header + payload as received */
  size_t raw_len;
} calc_msg;

/* limit bounds the bytes buffered (0 = unbounded): a feed past it fails. */
void calc_framer_init(calc_framer *f, size_t limit);
void calc_framer_free(calc_framer *f);
/* Appends bytes. 0, or -1 if memory is exhausted or the limit would be passed (nothing added). */
int calc_framer_feed(calc_framer *f, const void *data, size_t len);
/* 1: a message is in *m; 0: need more bytes; -1: invalid total length (*m's header filled,
 * the stream cannot be resynchronised and should be answered and closed). */
int calc_framer_next(calc_framer *f, calc_msg *m);
/* Bytes buffered that do not form a whole message yet, and where they start. */
size_t calc_framer_pending(const calc_framer *f);
const uint8_t *calc_framer_rest(const calc_framer *f);

#endif
