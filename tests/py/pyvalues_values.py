"""The Python values that tests/pyvalues.rs sends through C and back: one of
each kind that pickle writes differently, and `same`, which compares two
values by type as well as by value (NaN equals NaN, -0.0 is not 0.0, an
array's dtype and memory order count).
"""

import dataclasses
import datetime
import decimal
import enum
import math

import numpy as np


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple


class Color(enum.Enum):
    RED = 1
    GREEN = 2


def values() -> dict:
    """Every value, by name (the names are the test's)."""
    return {
        'int': 5,
        'zero': 0,
        'int64 max': 2**63 - 1,
        'int64 min': -(2**63),
        'uint64 max': 2**64 - 1,
        'big int': 2**100,
        'negative big int': -(3**90),
        'float': 1.5,
        'tiny float': 5e-324,
        'nan': math.nan,
        'inf': math.inf,
        '-inf': -math.inf,
        '-0.0': -0.0,
        'str': 'h\u00e9\U0001f600',
        'empty str': '',
        'bytes': b'\x00\xffab',
        'empty bytes': b'',
        'bytearray': bytearray(b'ab'),
        'tuple': (1, 'a'),
        'empty tuple': (),
        'nested tuple': ((1, (2, ())),),
        'set': {1, 2, 3},
        'empty set': set(),
        'frozenset': frozenset({'a'}),
        'dict int keys': {1: 'a', 2: 'b'},
        'dict tuple keys': {(1, 2): 'x'},
        'dict py/ key': {'py/x': 1},
        'complex': 1 + 2j,
        'None': None,
        'bool': True,
        'list': [1, [2.5, 'x'], {'k': None}],
        'dataclass': Point(1, 2.5),
        'frozen dataclass': Frozen('a', (1, 2)),
        'enum': Color.GREEN,
        'datetime': datetime.datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=datetime.timezone.utc),
        'date': datetime.date(2024, 2, 29),
        'Decimal': decimal.Decimal('1.10'),
        'f8 2x3': np.arange(6, dtype='<f8').reshape(2, 3) / 4,
        'i4 F order': np.asfortranarray(np.arange(6, dtype='<i4').reshape(2, 3)),
        'u1': np.array([0, 7, 255], dtype='|u1'),
        'bool array': np.array([True, False, True]),
        'c16': np.array([1 + 2j, -0.5j]),
        'i8 3-d': np.arange(24, dtype='<i8').reshape(2, 3, 4) - 12,
        'f4': np.array([0.25, -1.0], dtype='<f4'),
        '0-d': np.array(3.5),
        'empty array': np.zeros((0, 3)),
        '>f8': np.arange(3, dtype='>f8'),
        'float64 scalar': np.float64(1.5),
        'int32 scalar': np.int32(-3),
    }


def same(a, b) -> bool:
    """Whether `a` and `b` are the same value of the same type."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.c_contiguous == b.flags.c_contiguous
            and a.flags.f_contiguous == b.flags.f_contiguous
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc'))
        )
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a == b
    return a == b
