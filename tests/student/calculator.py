"""Student-style stand-in for the course's `calculator` module (docs/protocol.md sections 2.1, 3, 3.1 and 3.2).

The classes carry exactly the attributes, in exactly the order, that the reference's objects
carry, and the operators/functions/constants are module-level singletons, so that
`pickle.dumps(tree)` gives the reference's bytes.  Also holds a small recursive-descent parser
for the infix text the client takes on its command line.
"""
import enum
import math
import operator
import random


class Associativity(enum.Enum):
    """Whether a binary operator groups from the left or the right.  A plain Enum, as the
    course's is: pickle writes its members the way the running Python writes any Enum member,
    so this module's requests differ between interpreters exactly as the course's do (by value,
    Associativity(0), on most; by name, getattr(Associativity, 'LEFT'), on CPython 3.11.2,
    Debian 12's python3)."""
    LEFT = 0
    RIGHT = 1


class Expression:
    def __str__(self):
        return stringify(self)


class Constant(Expression):
    def __init__(self, value):
        self.value = value


class NamedConstant(Expression):
    def __init__(self, name, value):
        self.name = name
        self.value = value


class BinaryExpr(Expression):
    def __init__(self, left_operand, operator, right_operand):
        self.left_operand = left_operand
        self.operator = operator
        self.right_operand = right_operand


class UnaryExpr(Expression):
    def __init__(self, operator, operand):
        self.operator = operator
        self.operand = operand


class FunctionCallExpr(Expression):
    def __init__(self, function, *args):
        self.function = function
        self.args = list(args)


class BinaryOperator:
    def __init__(self, symbol, function, associativity):
        self.symbol = symbol
        self.function = function
        self.associativity = associativity


class UnaryOperator:
    def __init__(self, symbol, function):
        self.symbol = symbol
        self.function = function


class Function:
    def __init__(self, name, function):
        self.name = name
        self.function = function


ADD = BinaryOperator('+', operator.add, Associativity.LEFT)
SUB = BinaryOperator('-', operator.sub, Associativity.LEFT)
MUL = BinaryOperator('*', operator.mul, Associativity.LEFT)
DIV = BinaryOperator('/', operator.truediv, Associativity.LEFT)
MOD = BinaryOperator('%', operator.mod, Associativity.LEFT)
POW = BinaryOperator('**', operator.pow, Associativity.RIGHT)
NEG = UnaryOperator('-', operator.neg)
POS = UnaryOperator('+', operator.pos)

BINARY_OPERATORS = {op.symbol: op for op in (ADD, SUB, MUL, DIV, MOD, POW)}
UNARY_OPERATORS = {op.symbol: op for op in (NEG, POS)}

SIN = Function('sin', math.sin)
COS = Function('cos', math.cos)
TAN = Function('tan', math.tan)
SQRT = Function('sqrt', math.sqrt)
LOG = Function('log', math.log)
MAX = Function('max', max)
MIN = Function('min', min)
POWF = Function('pow', pow)
RAND = Function('rand', random.uniform)
FUNCTIONS = {f.name: f for f in (SIN, COS, TAN, SQRT, LOG, MAX, MIN, POWF, RAND)}

PI = NamedConstant('PI', math.pi)
TAU = NamedConstant('TAU', math.tau)
E = NamedConstant('E', math.e)
CONSTANTS = {c.name: c for c in (PI, TAU, E)}


# ---------------------------------------------------------------- evaluation with steps
def _eval(e):
    """Return (value, snapshots) following docs/protocol.md section 3.1 (post-order)."""
    if isinstance(e, (Constant, NamedConstant)):
        return e.value, []
    if isinstance(e, BinaryExpr):
        lv, ls = _eval(e.left_operand)
        steps = [BinaryExpr(s, e.operator, e.right_operand) for s in ls[:-1]]
        rv, rs = _eval(e.right_operand)
        steps += [BinaryExpr(Constant(lv), e.operator, s) for s in rs[:-1]]
        steps.append(BinaryExpr(Constant(lv), e.operator, Constant(rv)))
        v = e.operator.function(lv, rv)
        steps.append(Constant(v))
        return v, steps
    if isinstance(e, UnaryExpr):
        xv, xs = _eval(e.operand)
        steps = [UnaryExpr(e.operator, s) for s in xs[:-1]]
        steps.append(UnaryExpr(e.operator, Constant(xv)))
        v = e.operator.function(xv)
        steps.append(Constant(v))
        return v, steps
    if isinstance(e, FunctionCallExpr):
        values = []
        steps = []
        for k, a in enumerate(e.args):
            av, as_ = _eval(a)
            for s in as_[:-1]:
                steps.append(FunctionCallExpr(e.function, *[Constant(x) for x in values], s, *e.args[k + 1:]))
            values.append(av)
        steps.append(FunctionCallExpr(e.function, *[Constant(x) for x in values]))
        v = e.function.function(*values)
        steps.append(Constant(v))
        return v, steps
    raise TypeError(f"Unknown expression type {type(e)}")


def calculate(e, steps=True):
    value, snaps = _eval(e)
    return value, ([stringify(s) for s in snaps] if steps else [])


# ---------------------------------------------------------------- printing (3.2, quirk included)
def _full(e):
    if isinstance(e, Constant):
        return str(e.value)
    if isinstance(e, NamedConstant):
        return e.name
    if isinstance(e, BinaryExpr):
        return f"({_full(e.left_operand)} {e.operator.symbol} {_full(e.right_operand)})"
    if isinstance(e, UnaryExpr):
        return f"{e.operator.symbol}({_full(e.operand)})"
    if isinstance(e, FunctionCallExpr):
        return f"{e.function.name}({', '.join(_full(a) for a in e.args)})"
    raise TypeError(f"Unknown expression type {type(e)}")


def stringify(e, add_brackets=True):
    s = _full(e)
    if not add_brackets:
        return s
    stack, pairs = [], []
    for i, ch in enumerate(s):
        if ch == '(':
            stack.append(i)
        elif ch == ')':
            pairs.append((stack.pop(), i))
    opens = dict(pairs)
    for l, r in pairs:
        if opens.get(l + 1) == r - 1:
            s = s[:l] + s[l + 1:r - 1] + s[r:]
    if opens.get(0) is not None and opens[0] == len(s) - 1:
        s = s[1:-1]
    return s


# ---------------------------------------------------------------- parsing the client's text
class ParseError(ValueError):
    pass


def _tokenize(text):
    toks, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == '.' and i + 1 < len(text) and text[i + 1].isdigit()):
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == '.'):
                j += 1
            if j < len(text) and text[j] in 'eE':
                k = j + 1
                if k < len(text) and text[k] in '+-':
                    k += 1
                if k < len(text) and text[k].isdigit():
                    j = k
                    while j < len(text) and text[j].isdigit():
                        j += 1
            lit = text[i:j]
            toks.append(('num', float(lit) if ('.' in lit or 'e' in lit or 'E' in lit) else int(lit)))
            i = j
        elif c.isalpha() or c == '_':
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == '_'):
                j += 1
            toks.append(('name', text[i:j]))
            i = j
        elif text.startswith('**', i):
            toks.append(('op', '**'))
            i += 2
        elif c in '+-*/%(),':
            toks.append(('op', c))
            i += 1
        else:
            raise ParseError(f"unexpected character {c!r} at {i}")
    toks.append(('end', None))
    return toks


class _Parser:
    # expr   := term (('+'|'-') term)*
    # term   := unary (('*'|'/'|'%') unary)*
    # unary  := ('-'|'+') unary | power
    # power  := atom ('**' unary)?          (right associative, binds tighter than unary on its left)
    # atom   := number | NAME | NAME '(' args ')' | '(' expr ')'
    def __init__(self, text):
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self, kind=None, val=None):
        t = self.toks[self.i]
        if (kind and t[0] != kind) or (val is not None and t[1] != val):
            raise ParseError(f"expected {val or kind}, got {t[1]!r}")
        self.i += 1
        return t

    def parse(self):
        e = self.expr()
        self.take('end')
        return e

    def expr(self):
        e = self.term()
        while self.peek() in (('op', '+'), ('op', '-')):
            op = BINARY_OPERATORS[self.take()[1]]
            e = BinaryExpr(e, op, self.term())
        return e

    def term(self):
        e = self.unary()
        while self.peek() in (('op', '*'), ('op', '/'), ('op', '%')):
            op = BINARY_OPERATORS[self.take()[1]]
            e = BinaryExpr(e, op, self.unary())
        return e

    def unary(self):
        if self.peek() in (('op', '-'), ('op', '+')):
            op = UNARY_OPERATORS[self.take()[1]]
            return UnaryExpr(op, self.unary())
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() == ('op', '**'):
            self.take()
            return BinaryExpr(base, POW, self.unary())
        return base

    def atom(self):
        kind, val = self.peek()
        if kind == 'num':
            self.take()
            return Constant(val)
        if kind == 'name':
            self.take()
            if self.peek() == ('op', '('):
                if val not in FUNCTIONS:
                    raise ParseError(f"unknown function {val!r}")
                self.take()
                args = []
                if self.peek() != ('op', ')'):
                    args.append(self.expr())
                    while self.peek() == ('op', ','):
                        self.take()
                        args.append(self.expr())
                self.take('op', ')')
                return FunctionCallExpr(FUNCTIONS[val], *args)
            if val not in CONSTANTS:
                raise ParseError(f"unknown name {val!r}")
            return CONSTANTS[val]
        if (kind, val) == ('op', '('):
            self.take()
            e = self.expr()
            self.take('op', ')')
            return e
        raise ParseError(f"unexpected {val!r}")


def parse(text):
    return _Parser(text).parse()


E1 = "(sin(max(2, 3 * 4, 5, 6 * ((7 * 8) / 9), 10 / 11)) / 12) * 13"
E2 = "max(2, 3) + 3"
EXAMPLES = {1: E1, 2: E2}
