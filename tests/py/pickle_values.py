"""The Python values of the pickle codec's differential test
(tests/pickle_codec.rs, driven through pickle_corpus.py): every row of the
JSON form's table, built the same way in every process so that a value
re-encoded by the library can be compared with a fresh original.

The classes live here (module ``pickle_values``) so that pickles name them
as ``pickle_values:Name``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import uuid

try:
    import numpy as np
except ImportError:  # the plain test venv has no numpy
    np = None


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple


@dataclasses.dataclass
class Nested:
    point: Point
    items: list
    table: dict


@dataclasses.dataclass
class Slotted:
    __slots__ = ('a', 'b')
    a: int
    b: str


class Color(enum.Enum):
    RED = 1
    GREEN = 'green'


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Outer:
    class Inner:
        def __init__(self, v=0):
            self.v = v

        def __eq__(self, other):
            return type(other) is type(self) and other.v == self.v


class Plain:
    def __init__(self, a, b):
        self.a = a
        self.b = b


class Tagged(list):
    """A list subclass with an attribute."""


class Registry(dict):
    """A dict subclass with an attribute."""


class WithArgs(int):
    """An int subclass: pickled with __getnewargs__ arguments."""

    def __new__(cls, v, label='x'):
        self = super().__new__(cls, v)
        self.label = label
        return self

    def __getnewargs__(self):
        return (int(self), self.label)


class KwOnly:
    """Pickled with keyword arguments to __new__ (NEWOBJ_EX)."""

    def __new__(cls, *, size):
        self = super().__new__(cls)
        self.size = size
        return self

    def __getnewargs_ex__(self):
        return (), {'size': self.size}


def helper(x):
    return x


def _tagged():
    t = Tagged([1, 'two', (3,)])
    t.note = 'n'
    return t


def _registry():
    r = Registry(a=1, b=[2])
    r.owner = 'me'
    return r


def _shared():
    inner = [1, 2]
    return [inner, inner, {'again': inner}]


def plain_values():
    """Name -> value, for values every Python has."""
    big_dict = {f'key{i}': {'id': i, 'name': f'n{i}', 'score': i / 7, 'ok': i % 2 == 0,
                            'tags': ['a', 'b'], 'none': None} for i in range(50)}
    return {
        'none': None,
        'true': True,
        'false': False,
        'int_small': 7,
        'int_negative': -300,
        'int_32': 2**31 - 1,
        'int_64': 2**63,
        'int_minus_64': -2**63,
        'int_big': 2**100 + 12345,
        'int_minus_big': -(3**200),
        'float': 1.5,
        'float_tiny': 1e-05,
        'float_big': 1e16,
        'float_tenth': 0.1,
        'float_nan': float('nan'),
        'float_inf': float('inf'),
        'float_minus_inf': float('-inf'),
        'float_minus_zero': -0.0,
        'str': 'hello',
        'str_empty': '',
        'str_unicode': 'h\u00e9llo w\u00f6rld \u2713 \U0001f600 \u4e2d\u6587',
        'str_control': 'line\nbreak\r\\back\x00nul\x1a',
        'str_long': 'x' * 300 + '\u00e9',
        'str_surrogate': 'a\ud800b',
        'str_py_key': 'py/tuple',
        'bytes': b'\x00\x01\xfe\xff abc',
        'bytes_empty': b'',
        'bytes_long': bytes(range(256)) * 4,
        'bytearray': bytearray(b'\x00\xffxyz'),
        'bytearray_empty': bytearray(),
        'tuple_empty': (),
        'tuple_one': (1,),
        'tuple_nested': (1, (2, (3, ())), 'x'),
        'tuple_five': (1, 2, 3, 4, 5),
        'list': [1, 'a', None, 2.5],
        'list_empty': [],
        'list_nested': [[[]], [[1], [2, [3]]]],
        'set': {1, 2, 3},
        'set_empty': set(),
        'set_mixed': {'a', (1, 2), 3},
        'frozenset': frozenset({'x', 'y'}),
        'frozenset_empty': frozenset(),
        'dict': {'a': 1, 'b': [1, 2], 'c': {'d': None}},
        'dict_empty': {},
        'dict_int_keys': {1: 'one', 2: 'two'},
        'dict_tuple_keys': {(1, 2): 'pair', (): 'empty'},
        'dict_mixed_keys': {'a': 1, 2: 'b', None: 'n', 1.5: 'f'},
        'dict_py_key': {'py/tuple': [1], 'plain': 2},
        'dict_big': big_dict,
        'complex': 1.5 - 2j,
        'complex_nan': complex(float('nan'), float('inf')),
        'shared': _shared(),
        'point': Point(1, 2.5),
        'frozen': Frozen('f', (1, 2)),
        'nested': Nested(Point(0, -1.0), [Point(2, 3.0)], {'k': Frozen('g', ())}),
        'slotted': Slotted(3, 'three'),
        'plain_object': Plain([1, 2], {'x': (3,)}),
        'enum': Color.RED,
        'enum_str': Color.GREEN,
        'int_enum': Level.HIGH,
        'class': Point,
        'nested_class': Outer.Inner,
        'nested_instance': Outer.Inner(5),
        'function': helper,
        'builtin_function': len,
        'datetime': datetime.datetime(2024, 2, 29, 13, 45, 6, 789),
        'datetime_tz': datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        'date': datetime.date(1999, 12, 31),
        'timedelta': datetime.timedelta(days=2, seconds=5),
        'decimal': decimal.Decimal('3.14159265358979323846'),
        'fraction': fractions.Fraction(3, 7),
        'uuid': uuid.UUID('12345678-1234-5678-1234-567812345678'),
        'ordered_dict': collections.OrderedDict([('z', 1), ('a', 2)]),
        'defaultdict_int': collections.defaultdict(int, {'a': 1}),
        'defaultdict_list': collections.defaultdict(list, {'a': [1]}),
        'counter': collections.Counter('abca'),
        'deque': collections.deque([1, 2, 3]),
        'list_subclass': _tagged(),
        'dict_subclass': _registry(),
        'int_subclass': WithArgs(5, 'five'),
        'kw_only': KwOnly(size=3),
        'range': range(1, 10, 2),
        'slice': slice(1, None, 2),
        'academy_args': (Point(1, 2.0), 'text', [1, 2]),
        'academy_kwargs': {'timeout': 1.5, 'retries': 3, 'label': None},
    }


def numpy_values():
    """Name -> value, for values that need numpy."""
    if np is None:
        return {}
    a = np.arange(12, dtype='<f8').reshape(3, 4) / 3
    values = {
        'np_f8': a,
        'np_f4': np.linspace(0, 1, 7, dtype=np.float32),
        'np_f2': np.array([0.5, -2, 65504], dtype=np.float16),
        'np_longdouble': np.array([1.5, 2.25], dtype=np.longdouble),
        'np_i1': np.array([-128, 0, 127], dtype=np.int8),
        'np_i2': np.array([-3, 300], dtype=np.int16),
        'np_i4': np.arange(-5, 5, dtype=np.int32),
        'np_i8': np.array([2**62, -1], dtype=np.int64),
        'np_u1': np.array([0, 255], dtype=np.uint8),
        'np_u2': np.array([65535], dtype=np.uint16),
        'np_u4': np.array([2**32 - 1], dtype=np.uint32),
        'np_u8': np.array([2**64 - 1], dtype=np.uint64),
        'np_bool': np.array([True, False, True]),
        'np_c8': np.array([1 + 2j, -0.5j], dtype=np.complex64),
        'np_c16': np.array([[1 + 2j], [3 - 4j]], dtype=np.complex128),
        'np_big_endian_f8': np.arange(4, dtype='>f8'),
        'np_big_endian_i4': np.arange(6, dtype='>i4').reshape(2, 3),
        'np_fortran': np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        'np_fortran_view': a.T,
        'np_strided_view': np.arange(20, dtype=np.float64)[::3],
        'np_column_view': a[:, 1],
        'np_0d': np.array(2.5),
        'np_empty': np.zeros((0,), dtype=np.float64),
        'np_empty_2d': np.zeros((2, 0), dtype=np.int32),
        'np_3d': np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        'np_readonly': np.frombuffer(b'\x01\x00\x00\x00\x02\x00\x00\x00', dtype='<i4'),
        'np_nan': np.array([np.nan, np.inf, -0.0]),
        'np_object': np.array([1, 'a', None], dtype=object),
        'np_structured': np.array([(1, 2.0)], dtype=[('a', '<i4'), ('b', '<f8')]),
        'np_datetime': np.array(['2024-01-01', '2024-06-30'], dtype='datetime64[D]'),
        'np_str': np.array(['ab', 'cde']),
        'np_scalar_f8': np.float64(1.5),
        'np_scalar_f4': np.float32(0.1),
        'np_scalar_f2': np.float16(-0.25),
        'np_scalar_i4': np.int32(-3),
        'np_scalar_i1': np.int8(-128),
        'np_scalar_u8': np.uint64(2**64 - 1),
        'np_scalar_bool': np.bool_(True),
        'np_scalar_c16': np.complex128(1 - 2j),
        'np_scalar_c8': np.complex64(0.5 + 0.25j),
        'np_scalar_nan': np.float64('nan'),
        'np_scalar_longdouble': np.longdouble(1.25),
        'np_scalar_datetime': np.datetime64('2024-01-01T12:00'),
        'np_in_dataclass': Nested(Point(1, 2.0), [np.arange(3)], {'m': np.eye(2)}),
        'np_shared': [a, a],
        'np_args': (np.arange(5, dtype=np.float64), np.float32(2), 'label'),
    }
    return values


def all_values():
    values = plain_values()
    values.update(numpy_values())
    return values
