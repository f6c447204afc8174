"""Pickles for the pickle codec's differential test (tests/pickle_codec.rs).

    python pickle_corpus.py emit          # JSON lines on stdout
    python pickle_corpus.py check < in    # JSON lines in, a report out

``emit`` pickles every value of pickle_values.py with protocols 0 to 5 and
writes, for each, the pickle (base64) and the JSON form that a reference
converter written here, independently of the library, expects for it:
the converter walks the Python value itself and asks each object how it
pickles (``__reduce_ex__``), as ``pickle.Pickler`` does.

``check`` reads lines of ``{"name", "protocol", "pickle", "original"}``
(a pickle the library wrote, and the one Python wrote that it was made
from), loads each with ``pickle.loads`` (warnings are errors: numpy must
load them without a deprecation) and compares the result with what
Python's own ``pickle.loads`` makes of the original (which must itself
equal a freshly built value). Where Python cannot load its own original here (a pickle
of numpy 2 in numpy 1), there is nothing to compare: that line is
skipped. It prints one line per failure and then
``N passed, M failed, K skipped``; its exit status is 1 if any failed.
"""

from __future__ import annotations

import base64
import copyreg
import json
import math
import os
import pickle
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pickle_values  # noqa: E402

np = pickle_values.np

# (value name, protocol) pairs the JSON form cannot rebuild exactly, with
# why. Protocols 0 and 1 make objects with object.__new__(cls) where later
# protocols call cls.__new__(cls); the JSON form names only the class (it
# is the same `py/object` in every protocol), and the library writes the
# later protocols' call.
KNOWN_LOSSY = {
    ('kw_only', 0): 'cls.__new__ needs keyword arguments that protocol 0 does not give',
    ('kw_only', 1): 'cls.__new__ needs keyword arguments that protocol 0 does not give',
}


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode('ascii')


def name_of(obj) -> str:
    module = getattr(obj, '__module__', None) or pickle.whichmodule(obj, obj.__qualname__)
    return f'{module}:{obj.__qualname__}'


SIMPLE_KINDS = 'biufc'


def simple_dtype(dtype) -> bool:
    """A dtype of one number (what the py/ndarray form holds)."""
    return dtype.kind in SIMPLE_KINDS and dtype.fields is None and dtype.subdtype is None and not dtype.metadata


def scalar_value(x):
    if x.dtype.kind == 'b':
        return bool(x)
    if x.dtype.kind in 'iu':
        return int(x)
    if x.dtype.kind == 'c':
        return [float(x.real), float(x.imag)]
    return float(x)


def form(obj, proto):
    """The JSON form the library must give for `obj` pickled with `proto`."""
    t = type(obj)
    if obj is None or t in (bool, int, float):
        return obj
    if t is str:
        try:
            obj.encode('utf-8')
            return obj
        except UnicodeEncodeError:
            raw = obj.encode('utf-8', 'surrogatepass')
            return {'py/reduce': {'callable': '_codecs:decode',
                                  'args': [{'py/bytes': b64(raw)}, 'utf-8', 'surrogatepass']}}
    if t is list:
        return [form(x, proto) for x in obj]
    if t is tuple:
        return {'py/tuple': [form(x, proto) for x in obj]}
    if t is set:
        return {'py/set': [form(x, proto) for x in obj]}
    if t is frozenset:
        return {'py/frozenset': [form(x, proto) for x in obj]}
    if t is bytes:
        return {'py/bytes': b64(obj)}
    if t is bytearray:
        return {'py/bytearray': b64(obj)}
    if t is complex:
        return {'py/complex': [obj.real, obj.imag]}
    if t is pickle.PickleBuffer:
        # Protocol 5 writes a buffer in-band as bytes or a bytearray.
        with obj.raw() as m:
            return {'py/bytes' if m.readonly else 'py/bytearray': b64(m.tobytes())}
    if t is dict:
        if all(type(k) is str and not k.startswith('py/') and form(k, proto) == k for k in obj):
            return {k: form(v, proto) for k, v in obj.items()}
        return {'py/dict': [[form(k, proto), form(v, proto)] for k, v in obj.items()]}
    if np is not None and t is np.ndarray and simple_dtype(obj.dtype):
        fortran = obj.flags.f_contiguous and not obj.flags.c_contiguous
        order = 'F' if fortran else 'C'
        return {'py/ndarray': {'dtype': obj.dtype.str, 'shape': list(obj.shape), 'order': order,
                               'data': b64(obj.tobytes(order=order))}}
    if np is not None and isinstance(obj, np.generic) and obj.dtype.kind in SIMPLE_KINDS \
            and obj.dtype.itemsize in {'b': (1,), 'i': (1, 2, 4, 8), 'u': (1, 2, 4, 8),
                                       'f': (2, 4, 8), 'c': (8, 16)}[obj.dtype.kind]:
        return {'py/npscalar': {'dtype': obj.dtype.str, 'value': scalar_value(obj)}}
    if isinstance(obj, type) or type(obj).__name__ in ('function', 'builtin_function_or_method'):
        return {'py/global': name_of(obj)}
    return reduced_form(obj, proto)


def reduced_form(obj, proto):
    """An object pickle writes as a call: its py/object or py/reduce form."""
    reduce = copyreg.dispatch_table.get(type(obj))
    rv = reduce(obj) if reduce else obj.__reduce_ex__(proto)
    if isinstance(rv, str):
        return {'py/global': f'{pickle.whichmodule(obj, rv)}:{rv}'}
    func, args, state, listitems, dictitems = (tuple(rv) + (None,) * 5)[:5]
    func_name = getattr(func, '__name__', None)
    extra = {}
    if listitems is not None:
        items = [form(x, proto) for x in listitems]
        if items:
            extra['listitems'] = items
    if dictitems is not None:
        pairs = [[form(k, proto), form(v, proto)] for k, v in dictitems]
        if pairs:
            extra['dictitems'] = pairs
    if state is not None:
        extra['state'] = form(state, proto)
    if func_name == '__newobj__' and proto >= 2:
        out = {'py/object': callable_form(args[0], proto)}
        if args[1:]:
            out['args'] = [form(a, proto) for a in args[1:]]
        out.update(extra)
        return out
    if func_name == '__newobj_ex__':
        cls, a, kw = args
        if proto >= 4:
            out = {'py/object': callable_form(cls, proto)}
            if a:
                out['args'] = [form(x, proto) for x in a]
            out['kwargs'] = form(kw, proto)
            out.update(extra)
            return out
        import functools
        func, args = functools.partial(cls.__new__, cls, *a, **kw), ()
    if func is copyreg._reconstructor:
        cls, base, base_state = args
        if base is object and base_state is None:
            return {'py/object': callable_form(cls, proto), **extra}
        if base is list and type(base_state) is list:
            items = [form(x, proto) for x in base_state]
            return {'py/object': callable_form(cls, proto), **({'listitems': items} if items else {}), **extra}
        if base is dict and type(base_state) is dict:
            pairs = [[form(k, proto), form(v, proto)] for k, v in base_state.items()]
            return {'py/object': callable_form(cls, proto), **({'dictitems': pairs} if pairs else {}), **extra}
    body = {'callable': callable_form(func, proto), 'args': [form(a, proto) for a in args]}
    body.update(extra)
    return {'py/reduce': body}


def callable_form(func, proto):
    """A callable: "module:QualName" when pickle names it, else its form."""
    if isinstance(func, type) or type(func).__name__ in ('function', 'builtin_function_or_method'):
        return name_of(func)
    return form(func, proto)


def same(a, b) -> bool:
    """Equal as values, and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if np is not None and isinstance(a, np.ndarray):
        # Byte order is how the data is laid out, not what it is: numpy
        # itself loads a big-endian array pickled with protocols 0 to 4 as
        # a native one.
        if a.dtype.newbyteorder('=') != b.dtype.newbyteorder('=') or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return all(same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
        a, b = native(a), native(b)
        if a.dtype.kind in 'fc' and a.dtype.itemsize > 16 // (2 if a.dtype.kind == 'f' else 1):
            # long double: padding bytes are not part of the value.
            return bool(np.array_equal(a, b, equal_nan=True)) and bool(np.all(np.signbit(a.real) == np.signbit(b.real)))
        return a.tobytes() == b.tobytes()
    if np is not None and isinstance(a, np.generic):
        if a.dtype != b.dtype:
            return False
        if a.dtype.kind == 'f' and a.dtype.itemsize > 8:
            return bool(a == b) or bool(np.isnan(a) and np.isnan(b))
        return a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)) and same_attrs(a, b)
    if isinstance(a, dict):
        return (len(a) == len(b) and all(same(k1, k2) and same(v1, v2)
                                         for (k1, v1), (k2, v2) in zip(a.items(), b.items()))
                and getattr(a, 'default_factory', None) is getattr(b, 'default_factory', None)
                and same_attrs(a, b))
    if hasattr(a, '__dict__') and not isinstance(a, type) and not callable(a):
        return same(vars(a), vars(b)) and (not isinstance(a, int) or int(a) == int(b))
    if hasattr(type(a), '__slots__') and not isinstance(a, (int, str)):
        return all(same(getattr(a, s, None), getattr(b, s, None)) for s in type(a).__slots__ if s != '__weakref__')
    return a == b


def native(a):
    """An array in native byte order (its values unchanged)."""
    return a.astype(a.dtype.newbyteorder('='), copy=False) if a.dtype.byteorder not in '=|' else a


def same_attrs(a, b) -> bool:
    return same(vars(a), vars(b)) if hasattr(a, '__dict__') else True


def emit():
    values = pickle_values.all_values()
    for name, value in values.items():
        for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
            if (name, proto) in KNOWN_LOSSY:
                continue
            try:
                data = pickle.dumps(value, protocol=proto)
            except (pickle.PicklingError, TypeError) as e:
                print(json.dumps({'name': name, 'protocol': proto, 'unpicklable': str(e)}))
                continue
            line = {'name': name, 'protocol': proto, 'pickle': b64(data), 'form': form(value, proto)}
            print(json.dumps(line))


def check():
    values = pickle_values.all_values()
    passed = failed = skipped = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        name, proto = item['name'], item['protocol']
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('error')
                original = pickle.loads(base64.b64decode(item['original']))
        except Exception:  # noqa: BLE001 (Python's own pickle does not load here)
            skipped += 1
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('error')
                got = pickle.loads(base64.b64decode(item['pickle']))
        except Exception as e:  # noqa: BLE001 (any failure is reported)
            print(f'FAIL {name} protocol {proto}: pickle.loads raised {e!r}')
            failed += 1
            continue
        if name not in values or not same(values[name], original):
            print(f'FAIL {name} protocol {proto}: Python\'s own pickle does not load as the value here')
            failed += 1
        elif same(original, got):
            passed += 1
        else:
            print(f'FAIL {name} protocol {proto}: {got!r} != {original!r}')
            failed += 1
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    sys.exit(1 if failed or not passed else 0)


if __name__ == '__main__':
    {'emit': emit, 'check': check}[sys.argv[1]]()
