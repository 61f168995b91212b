/* calc/limits.h: every limit the kit enforces and the reference lacks, in one place.
 * Each is checked before allocation or recursion, so a hostile input is refused before it
 * costs memory or stack. */
#ifndef CALC_LIMITS_H
#define CALC_LIMITS_H

/* Wire: a total length is a 16-bit field; 12 bytes of it are the header. */
#define CALC_HEADER_SIZE 12u
#define CALC_MAX_MESSAGE 65535u
#define CALC_MAX_PAYLOAD (CALC_MAX_MESSAGE - CALC_HEADER_SIZE)

/* Expressions: nesting deeper than this is refused (the reference has Python's recursion
 * limit of 1000, which it hits with a RecursionError long before any real use). */
#define CALC_MAX_DEPTH 200
/* Arguments of one function call. */
#define CALC_MAX_ARGS 1000
/* Nodes of one expression (a 65523-byte payload cannot hold more than this anyway). */
#define CALC_MAX_NODES 20000

/* Integers: any integer, input or intermediate, above this many bits is refused with a 400
 * OverflowError before it is computed: 9 ** 9 ** 9 is answered in microseconds. 2**99999 (the
 * largest power of two allowed) has 30103 digits, which still fits a response. */
#define CALC_MAX_INT_BITS 100000u

/* Steps: the whole response must fit one message. */
#define CALC_MAX_STEPS_BYTES CALC_MAX_PAYLOAD

#endif
