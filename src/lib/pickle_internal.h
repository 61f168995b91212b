/* pickle_internal.h: what the pickle encoder and the two decoders share inside libcalc.
 *
 * Module prefix: pkl_. Opcode values are CPython's (Lib/pickle.py, Modules/_pickle.c). */
#ifndef CALC_PICKLE_INTERNAL_H
#define CALC_PICKLE_INTERNAL_H
#include <gmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "calc/buf.h"
#include "calc/err.h"
#include "calc/limits.h"

enum {
  PKL_MARK = '(', PKL_STOP = '.', PKL_POP = '0', PKL_POP_MARK = '1', PKL_BININT = 'J',
  PKL_BININT1 = 'K', PKL_BININT2 = 'M', PKL_NONE = 'N', PKL_REDUCE = 'R', PKL_BINUNICODE = 'X',
  PKL_APPEND = 'a', PKL_BUILD = 'b', PKL_EMPTY_DICT = '}', PKL_APPENDS = 'e', PKL_BINGET = 'h',
  PKL_LONG_BINGET = 'j', PKL_EMPTY_LIST = ']', PKL_BINPUT = 'q', PKL_LONG_BINPUT = 'r',
  PKL_SETITEM = 's', PKL_TUPLE = 't', PKL_EMPTY_TUPLE = ')', PKL_SETITEMS = 'u',
  PKL_BINFLOAT = 'G', PKL_BINBYTES = 'B', PKL_SHORT_BINBYTES = 'C',
  PKL_PROTO = 0x80, PKL_NEWOBJ = 0x81, PKL_TUPLE1 = 0x85, PKL_TUPLE2 = 0x86, PKL_TUPLE3 = 0x87,
  PKL_NEWTRUE = 0x88, PKL_NEWFALSE = 0x89, PKL_LONG1 = 0x8a, PKL_LONG4 = 0x8b,
  PKL_SHORT_BINUNICODE = 0x8c, PKL_STACK_GLOBAL = 0x93, PKL_MEMOIZE = 0x94, PKL_FRAME = 0x95,
  /* protocols 0 and 1 (text arguments ended by a newline), and GLOBAL up to protocol 3 */
  PKL_GLOBAL = 'c', PKL_INT = 'I', PKL_LONG = 'L', PKL_FLOAT = 'F', PKL_UNICODE = 'V',
  PKL_PUT = 'p', PKL_GET = 'g', PKL_DICT = 'd', PKL_LIST = 'l'
};

/* CPython's framer (pickle.py _Framer): a frame is committed at the first object boundary
 * after it reached 64 KiB; frames under 4 bytes get no FRAME header; strings of 64 KiB and
 * more are written outside any frame. */
#define PKL_FRAME_TARGET 65536u
#define PKL_FRAME_MIN 4u
/* CPython's batch size for MARK ... APPENDS / SETITEMS. */
#define PKL_BATCHSIZE 1000u

/* Decoder limits. A payload never exceeds CALC_MAX_PAYLOAD, and every opcode is at least one
 * byte, so these are reached only by hostile input; they are checked before any allocation.
 * The build writes them into the Wireshark dissector's calc/limits.lua (lab/wireshark/
 * gen_limits.c), so both decoders refuse the same payloads. */
#define PKL_MAX_INPUT CALC_MAX_PAYLOAD
#ifndef PKL_MAX_MEMO
#define PKL_MAX_MEMO 65536u
#endif
     /* memo entries (MEMOIZE/BINPUT indexes) */
#ifndef PKL_MAX_STACK
#define PKL_MAX_STACK 65536u
#endif
    /* values and marks on the stack */
#ifndef PKL_MAX_VALUES
#define PKL_MAX_VALUES 131072u
#endif   /* values created by one payload */
#define PKL_MAX_PYOBJS 200000u   /* calc_pyobj nodes made from one response (memo sharing expands) */
#define PKL_MAX_PYBYTES (16u << 20) /* str/bytes/int bytes copied into one response's objects */
#define PKL_MAX_DICT_ITEMS 1024u /* key/value pairs in one dict (requests use at most 3) */
#define PKL_MAX_HASH_DEPTH 64u   /* nesting of a tuple used as a dict key */
#define PKL_MAX_HASH_VALUES 4096u /* values one dict key's hashability check may visit */
/* Int bytes copied into one request tree: a real payload holds at most CALC_MAX_PAYLOAD bytes
 * of them (the reference never shares a Constant); memo sharing must not multiply them. */
#define PKL_MAX_TREE_INT_BYTES CALC_MAX_PAYLOAD
#define PKL_MAX_PYDEPTH 200u     /* nesting of a response object */
/* CPython 3.11 refuses to convert a decimal text of more than 4300 digits (and so would the
 * reference's unpickler); it is also far inside CALC_MAX_INT_BITS. */
#define PKL_MAX_TEXT_DIGITS 4300u
/* Longest module or global name taken (GLOBAL reads at most this much per line): each global
 * keeps its own copy of both, so a long memoized str named by every STACK_GLOBAL of a hostile
 * response would otherwise multiply memory by thousands. */
#define PKL_MAX_GLOBAL_NAME 256u
#define PKL_MAX_NAMED_LEN 64u    /* bytes of a NamedConstant's name */

/* ---- the non-executing virtual machine shared by both decoders (pickle_vm.c) ---- */
typedef enum {
  PKV_NONE, PKV_BOOL, PKV_INT, PKV_FLOAT, PKV_STR, PKV_BYTES, PKV_TUPLE, PKV_LIST, PKV_DICT,
  PKV_GLOBAL,  /* module.name, never looked up */
  PKV_OBJ,     /* cls EMPTY_TUPLE NEWOBJ: an instance of a global class, state set by BUILD */
  PKV_CALL     /* callable args REDUCE: recorded, never called; state may be set by BUILD */
} pkl_kind;

typedef struct pkl_val {
  pkl_kind kind;
  bool b;
  bool has_state;
  double f;
  mpz_t z;                 /* PKV_INT (initialised only for that kind) */
  char *s; size_t len;     /* STR/BYTES data (NUL-terminated); GLOBAL: module */
  char *name;              /* GLOBAL: name */
  struct pkl_val **items;  /* TUPLE/LIST, DICT (k0 v0 k1 v1 ...) */
  size_t n, cap;
  struct pkl_val *cls;     /* OBJ: class; CALL: callable */
  struct pkl_val *args;    /* CALL: args tuple */
  struct pkl_val *state;   /* OBJ/CALL after BUILD */
  int global_id;           /* GLOBAL: index in the request allowlist, or -1 */
} pkl_val;

typedef struct pkl_vm pkl_vm;

typedef enum { PKL_MODE_REQUEST, PKL_MODE_RESPONSE } pkl_mode;

/* Runs the machine over p[0..n). CALC_OK: *top is the value STOP returned; it stays valid
 * until pkl_vm_free. CALC_ERR_INVALID: no pickle (empty, malformed, truncated, a refused
 * opcode or global, over a limit). CALC_ERR_NOMEM. *vm is always set (free it even on error).
 * In request mode only the globals of the request allowlist are accepted (global_id >= 0). */
calc_err pkl_run(const uint8_t *p, size_t n, pkl_mode mode, pkl_vm **vm, pkl_val **top);
void pkl_vm_free(pkl_vm *vm);
/* A str value without NUL bytes inside (one that can be compared as a C string). */
bool pkl_is_str(const pkl_val *v);

/* Request allowlist of globals (pickle_vm.c), indexes are global_id. */
typedef enum {
  PKG_CONSTANT, PKG_NAMED, PKG_BINEXPR, PKG_UNEXPR, PKG_CALLEXPR, PKG_BINOP, PKG_UNOP,
  PKG_FUNCTION, PKG_ASSOC,
  PKG_OP_ADD, PKG_OP_SUB, PKG_OP_MUL, PKG_OP_TRUEDIV, PKG_OP_MOD, PKG_OP_POW, PKG_OP_NEG,
  PKG_OP_POS,
  PKG_MATH_SIN, PKG_MATH_COS, PKG_MATH_TAN, PKG_MATH_SQRT, PKG_MATH_LOG,
  PKG_B_MAX, PKG_B_MIN, PKG_B_POW, PKG_RANDOM, PKG_GETATTR,
  /* protocols 0 and 1 make instances with copyreg._reconstructor(cls, object, None) */
  PKG_RECONSTRUCTOR, PKG_OBJECT,
  PKG_COUNT
} pkl_global_id;

typedef struct pkl_global {
  const char *module, *name;
} pkl_global;
extern const pkl_global pkl_globals[PKG_COUNT];

/* The enum members a request may name: some CPythons (3.11.2, Debian 12's python3) pickle an
 * enum member as builtins.getattr(TheEnumClass, 'NAME') where the others write
 * TheEnumClass(value). Only these (class, name) pairs are accepted in that form, and the
 * getattr is recorded, never run. */
typedef struct pkl_enum_member {
  pkl_global_id cls;
  const char *name;
  int value;
} pkl_enum_member;
extern const pkl_enum_member pkl_enum_members[];
extern const size_t pkl_enum_member_count;
/* The member's index in pkl_enum_members when v is getattr(<allowlisted enum>, '<member>')
 * recorded by REDUCE (no state), else -1. */
int pkl_enum_member_of(const pkl_val *v);

#endif
