package academy

/*
#include <stdint.h>
#include <stdlib.h>
#include "academy.h"
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unsafe"
)

// Python values that JSON has no form for reach Go handlers, and leave
// them, in the library's JSON forms ({"py/tuple": [...]}, {"py/bytes":
// "<base64>"}, {"py/ndarray": {...}}, ...; the README's "Python values"
// section lists them all). The types below read and write the common
// ones with encoding/json: they implement json.Marshaler and
// json.Unmarshaler, so they can be handler arguments (Unpack(args, &a)),
// results (return a *NDArray) and Action arguments, nested anywhere in
// other values. Arrays and bytes are encoded and decoded by the library
// (academy_ndarray_write, academy_ndarray_read, academy_bytes_write,
// academy_bytes_read).

// Order is how an array's elements are laid out.
type Order byte

const (
	// RowMajor is numpy's order "C": the last index varies fastest.
	RowMajor Order = 'C'
	// ColumnMajor is numpy's order "F": the first index varies fastest,
	// as in Fortran and Julia.
	ColumnMajor Order = 'F'
)

// NDArray is a numpy array: {"py/ndarray": {"dtype": ..., "shape": ...,
// "order": ..., "data": ...}}. Data holds the elements, laid out in Order,
// in the machine's byte order (the library swaps an array of the other
// byte order when it reads it).
type NDArray struct {
	// Dtype is numpy's dtype.str in the machine's byte order: "<f8",
	// "<i4", "|b1", "|u1", "<c16" on a little-endian machine.
	Dtype string
	// Shape is numpy's shape (empty for a 0-d array).
	Shape []int
	// Order is RowMajor or ColumnMajor; the zero Order is RowMajor.
	Order Order
	// Data is Len() * Itemsize() bytes.
	Data []byte
}

// Element is a Go type that an array's elements can have, and its
// numpy dtype: bool (bool), int8...int64 (int8...int64), uint8...uint64,
// float32 and float64 (float32, float64), complex64 and complex128
// (complex64, complex128).
type Element interface {
	bool | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 |
		float32 | float64 | complex64 | complex128
}

// nativeOrder is numpy's mark of the machine's byte order.
var nativeOrder = func() byte {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return '<'
	}
	return '>'
}()

// dtypeOf is the numpy dtype of T, in the machine's byte order.
func dtypeOf[T Element]() string {
	var zero T
	size := int(unsafe.Sizeof(zero))
	var kind byte
	switch any(zero).(type) {
	case bool:
		kind = 'b'
	case int8, int16, int32, int64:
		kind = 'i'
	case uint8, uint16, uint32, uint64:
		kind = 'u'
	case float32, float64:
		kind = 'f'
	default:
		kind = 'c'
	}
	order := nativeOrder
	if size == 1 {
		order = '|' // numpy's mark for "no byte order"
	}
	return string([]byte{order, kind}) + strconv.Itoa(size)
}

// NewNDArray makes a row-major (numpy's default, order "C") array of
// values with shape: by default (no shape given) one dimension of
// len(values); []int{}... makes a 0-d array of one value. The values are
// copied.
func NewNDArray[T Element](values []T, shape ...int) (*NDArray, error) {
	return NewNDArrayOrder(values, RowMajor, shape...)
}

// NewNDArrayOrder is NewNDArray with the elements of values laid out in
// order: with ColumnMajor, values[i + j*rows] is element (i, j) of a
// (rows, cols) array.
func NewNDArrayOrder[T Element](values []T, order Order, shape ...int) (*NDArray, error) {
	if shape == nil {
		shape = []int{len(values)}
	}
	a := &NDArray{Dtype: dtypeOf[T](), Shape: append([]int(nil), shape...), Order: order}
	n, err := a.count()
	if err != nil {
		return nil, err
	}
	if n != len(values) {
		return nil, fmt.Errorf("academy: shape %v holds %d elements, not %d", shape, n, len(values))
	}
	a.Data = make([]byte, len(values)*int(unsafe.Sizeof(*new(T))))
	if len(values) > 0 {
		copy(a.Data, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(values))), len(a.Data)))
	}
	return a, a.check()
}

// Elements copies the elements of a into a []T, in a.Order; T must be the
// Go type of a.Dtype (Element lists them): Elements[float64] for "<f8".
// Use a.Index to find an element by its indices.
func Elements[T Element](a *NDArray) ([]T, error) {
	if want := dtypeOf[T](); !sameDtype(a.Dtype, want) {
		return nil, fmt.Errorf("academy: the array's dtype is %q, not %q (%T)", a.Dtype, want, *new(T))
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	values := make([]T, a.Len())
	if len(values) == 0 {
		return values, nil
	}
	if bools, ok := any(values).([]bool); ok {
		// A byte other than 0 or 1 is not a Go bool: compare, not copy.
		for i, b := range a.Data {
			bools[i] = b != 0
		}
		return values, nil
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(values))), len(a.Data)), a.Data)
	return values, nil
}

// sameDtype tells whether dtype names want, a dtype of dtypeOf, also when
// it marks the machine's byte order with "=" or not at all ("=f8", "f8").
func sameDtype(dtype, want string) bool {
	body := want[1:]
	switch dtype {
	case want, "=" + body, body:
		return true
	}
	return false
}

// Len is the number of elements: the product of Shape (1 for a 0-d array).
func (a *NDArray) Len() int {
	n, err := a.count()
	if err != nil {
		return 0
	}
	return n
}

// Itemsize is the number of bytes of one element, read from Dtype (0 for
// a Dtype that is not numpy's dtype.str of a bool, integer, float or
// complex type).
func (a *NDArray) Itemsize() int {
	size, err := strconv.Atoi(strings.TrimLeft(a.Dtype, "<>=|biufc"))
	if err != nil || size <= 0 {
		return 0
	}
	return size
}

// Index is the position in Elements of the element at index (numpy's
// a[i, j, ...], each from 0), following a.Order: i*cols + j for a
// row-major (rows, cols) array, i + j*rows for a column-major one. It
// panics if index has not len(Shape) entries or one is out of range.
func (a *NDArray) Index(index ...int) int {
	if len(index) != len(a.Shape) {
		panic(fmt.Sprintf("academy: %d indices for an array of %d dimensions", len(index), len(a.Shape)))
	}
	at, stride := 0, 1
	for k := range index {
		d := k // ColumnMajor: the first index varies fastest
		if a.Order != ColumnMajor {
			d = len(index) - 1 - k
		}
		if index[d] < 0 || index[d] >= a.Shape[d] {
			panic(fmt.Sprintf("academy: index %v is out of the shape %v", index, a.Shape))
		}
		at += index[d] * stride
		stride *= a.Shape[d]
	}
	return at
}

// count is the product of the shape.
func (a *NDArray) count() (int, error) {
	n := 1
	for _, d := range a.Shape {
		if d < 0 {
			return 0, fmt.Errorf("academy: negative dimension in shape %v", a.Shape)
		}
		n *= d
	}
	return n, nil
}

// check tells whether Order, Shape and Data agree with each other, so
// that the library reads no more than Data holds.
func (a *NDArray) check() error {
	if a.Order != 0 && a.Order != RowMajor && a.Order != ColumnMajor {
		return fmt.Errorf("academy: an array's order is 'C' or 'F', not %q", byte(a.Order))
	}
	n, err := a.count()
	if err != nil {
		return err
	}
	size := a.Itemsize()
	if size == 0 {
		return fmt.Errorf("academy: %q is not the dtype of a bool, integer, float or complex array", a.Dtype)
	}
	if len(a.Data) != n*size {
		return fmt.Errorf("academy: shape %v of %s holds %d bytes, Data has %d", a.Shape, a.Dtype, n*size, len(a.Data))
	}
	return nil
}

// MarshalJSON writes the array's JSON form (academy_ndarray_write).
func (a NDArray) MarshalJSON() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	shape := make([]C.size_t, len(a.Shape)+1) // never empty: &shape[0] is valid
	for i, d := range a.Shape {
		shape[i] = C.size_t(d)
	}
	var cs cstrings
	defer cs.free()
	dtype := cs.add(a.Dtype)
	data := unsafe.Pointer(&shape[0]) // any valid pointer for no bytes
	if len(a.Data) > 0 {
		data = unsafe.Pointer(&a.Data[0])
	}
	order := C.char(RowMajor)
	if a.Order == ColumnMajor {
		order = C.char(ColumnMajor)
	}
	var out *C.char
	if err := call(func() C.enum_academy_status {
		return C.academy_ndarray_write(dtype, C.size_t(len(a.Shape)), &shape[0], order, data, &out)
	}); err != nil {
		return nil, err
	}
	return []byte(takeString(out)), nil
}

// UnmarshalJSON reads an array's JSON form (academy_ndarray_read); an
// error with StatusInvalidArgument for any other value, or a dtype that
// is not a bool, integer, float or complex one.
func (a *NDArray) UnmarshalJSON(text []byte) error {
	var cs cstrings
	defer cs.free()
	in := cs.add(string(text))
	var arr *C.struct_academy_ndarray
	if err := call(func() C.enum_academy_status { return C.academy_ndarray_read(in, nil, &arr) }); err != nil {
		return err
	}
	defer C.academy_ndarray_free(arr)
	shape := unsafe.Slice(arr.shape, arr.ndim)
	*a = NDArray{
		Dtype: C.GoString(arr.dtype),
		Shape: make([]int, len(shape)),
		Order: Order(arr.order),
		Data:  bytes.Clone(unsafe.Slice((*byte)(arr.data), arr.nbytes)),
	}
	for i, d := range shape {
		a.Shape[i] = int(d)
	}
	if a.Data == nil {
		a.Data = []byte{}
	}
	return nil
}

// Bytes is a Python bytes value, {"py/bytes": "<base64>"}; it reads a
// bytearray ({"py/bytearray": ...}) too. Convert a []byte to send one:
// Bytes(b).
type Bytes []byte

// MarshalJSON writes {"py/bytes": ...} (academy_bytes_write).
func (b Bytes) MarshalJSON() ([]byte, error) {
	var none [1]byte // any valid pointer for no bytes
	data := unsafe.Pointer(&none[0])
	if len(b) > 0 {
		data = unsafe.Pointer(&b[0])
	}
	var out *C.char
	if err := call(func() C.enum_academy_status { return C.academy_bytes_write(data, C.size_t(len(b)), &out) }); err != nil {
		return nil, err
	}
	return []byte(takeString(out)), nil
}

// UnmarshalJSON reads {"py/bytes": ...} or {"py/bytearray": ...}
// (academy_bytes_read).
func (b *Bytes) UnmarshalJSON(text []byte) error {
	var cs cstrings
	defer cs.free()
	in := cs.add(string(text))
	var data *C.uint8_t
	var n C.size_t
	if err := call(func() C.enum_academy_status { return C.academy_bytes_read(in, nil, &data, &n) }); err != nil {
		return err
	}
	defer C.academy_bytes_free(data, n)
	*b = append(Bytes{}, unsafe.Slice((*byte)(data), n)...)
	return nil
}

// Tuple is a Python tuple, {"py/tuple": [...]}: make one of any values
// that encoding/json marshals. Unmarshaling one keeps each item as a
// json.RawMessage (decode it with json.Unmarshal, or decode the whole
// tuple with Unpack); it reads a plain JSON array too.
type Tuple []any

// MarshalJSON writes {"py/tuple": [...]}.
func (t Tuple) MarshalJSON() ([]byte, error) {
	items := []any(t)
	if items == nil {
		items = []any{}
	}
	return json.Marshal(map[string][]any{"py/tuple": items})
}

// UnmarshalJSON reads {"py/tuple": [...]} or a JSON array.
func (t *Tuple) UnmarshalJSON(text []byte) error {
	items, err := sequence(text, "py/tuple")
	if err != nil {
		return err
	}
	*t = make(Tuple, len(items))
	for i, item := range items {
		(*t)[i] = item
	}
	return nil
}

// Dict is a Python dict in its order, with keys of any type (a dict whose
// keys are all str, none starting with "py/", is a plain JSON object,
// which Go reads as a map[string]...): {"py/dict": [[key, value], ...]}.
// Unmarshaling one keeps each key and value as a json.RawMessage.
type Dict []KeyValue

// KeyValue is one item of a Dict.
type KeyValue struct {
	Key, Value any
}

// MarshalJSON writes {"py/dict": [[key, value], ...]}.
func (d Dict) MarshalJSON() ([]byte, error) {
	pairs := make([][2]any, len(d))
	for i, kv := range d {
		pairs[i] = [2]any{kv.Key, kv.Value}
	}
	return json.Marshal(map[string][][2]any{"py/dict": pairs})
}

// UnmarshalJSON reads {"py/dict": [[key, value], ...]}.
func (d *Dict) UnmarshalJSON(text []byte) error {
	var form struct {
		Pairs *[][2]json.RawMessage `json:"py/dict"`
	}
	if err := json.Unmarshal(text, &form); err != nil || form.Pairs == nil {
		return fmt.Errorf("academy: not a {\"py/dict\": [[key, value], ...]} form: %.80s", text)
	}
	*d = make(Dict, len(*form.Pairs))
	for i, kv := range *form.Pairs {
		(*d)[i] = KeyValue{Key: kv[0], Value: kv[1]}
	}
	return nil
}

// Complex is a Python complex number, {"py/complex": [real, imag]}.
type Complex complex128

// MarshalJSON writes {"py/complex": [real, imag]}.
func (c Complex) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string][2]float64{"py/complex": {real(c), imag(c)}})
}

// UnmarshalJSON reads {"py/complex": [real, imag]}.
func (c *Complex) UnmarshalJSON(text []byte) error {
	var form struct {
		Parts *[2]float64 `json:"py/complex"`
	}
	if err := json.Unmarshal(text, &form); err != nil || form.Parts == nil {
		return fmt.Errorf("academy: not a {\"py/complex\": [real, imag]} form: %.80s", text)
	}
	*c = Complex(complex(form.Parts[0], form.Parts[1]))
	return nil
}

// Unpack decodes the items of a JSON array or a {"py/tuple": [...]} form
// (a handler's args, a tuple result) into dst, one pointer per item, with
// json.Unmarshal; a nil pointer skips its item. There must be as many
// items as dst:
//
//	var a academy.NDArray
//	var factor float64
//	if err := academy.Unpack(args, &a, &factor); err != nil { ... }
func Unpack(items json.RawMessage, dst ...any) error {
	values, err := sequence(items, "py/tuple")
	if err != nil {
		return err
	}
	if len(values) != len(dst) {
		return fmt.Errorf("academy: %d values to unpack into %d", len(values), len(dst))
	}
	for i, v := range values {
		if dst[i] == nil {
			continue
		}
		if err := json.Unmarshal(v, dst[i]); err != nil {
			return fmt.Errorf("academy: item %d: %w", i, err)
		}
	}
	return nil
}

// sequence reads a JSON array, or the array of a {form: [...]} object.
func sequence(text []byte, form string) ([]json.RawMessage, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(text, &items); err == nil && items != nil {
		return items, nil
	}
	var wrapped map[string]*[]json.RawMessage
	if err := json.Unmarshal(text, &wrapped); err == nil && len(wrapped) == 1 && wrapped[form] != nil {
		return *wrapped[form], nil
	}
	return nil, fmt.Errorf("academy: not a JSON array nor a {%q: [...]} form: %.80s", form, text)
}
