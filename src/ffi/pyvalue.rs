//! Python values as typed buffers for C: `academy_ndarray` (a numpy array's
//! elements, shape and layout), bytes, and finding a value inside JSON.

use std::ffi::{c_char, c_void, CString};

use serde_json::Value;

use super::{
    academy_status, arg_opt_str, arg_str, boundary, boundary_or, check_out, write_out,
    write_string,
};
use crate::error::{Error, Result};
use crate::wire::message::parse_json;
use crate::wire::pyvalue::{self, byte_count, Dtype, Layout, NdArray};

/// A numpy array as a typed buffer (read-only; the library allocates it,
/// the program frees it with academy_ndarray_free()).
///
/// Its elements are in this machine's byte order whatever order they
/// travelled in, and laid out as `order` says.
/// @ingroup pyvalues
#[repr(C)]
#[derive(Debug)]
pub struct academy_ndarray {
    /// numpy's `dtype.str` in this machine's byte order: "<f8", "<i4",
    /// "|b1", "|u1", "<c16", ... (NUL-terminated).
    pub dtype: *const c_char,
    /// 'b' bool, 'i' signed integer, 'u' unsigned integer, 'f' float,
    /// 'c' complex (two floats of itemsize / 2 bytes: real, imaginary).
    pub kind: c_char,
    /// Bytes per element.
    pub itemsize: usize,
    /// The number of dimensions; 0 for a 0-d array (one element).
    pub ndim: usize,
    /// `ndim` sizes; NULL when `ndim` is 0.
    pub shape: *const usize,
    /// 'C' (row-major: the last index varies fastest) or 'F' (column-major:
    /// the first index varies fastest): how `data` is laid out.
    pub order: c_char,
    /// `nbytes` bytes of elements, aligned for any of these element types
    /// (16 bytes). Never NULL (not to be read when `nbytes` is 0). The
    /// program may write into it (it is the program's copy).
    pub data: *mut c_void,
    /// product(shape) * itemsize.
    pub nbytes: usize,
}

/// The allocation behind an `academy_ndarray`: the struct, then what its
/// pointers point into (heap buffers, which never move).
#[repr(C)]
struct OwnedNdArray {
    array: academy_ndarray,
    dtype: CString,
    shape: Vec<usize>,
    /// The elements, in 16-byte units so that any element type is aligned.
    data: Vec<u128>,
}

impl OwnedNdArray {
    fn new(array: NdArray) -> Box<OwnedNdArray> {
        let array = array.into_native();
        let nbytes = array.data.len();
        let mut data = vec![0u128; nbytes.div_ceil(16).max(1)];
        // SAFETY: `data` holds at least `nbytes` bytes; the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                array.data.as_ptr(),
                data.as_mut_ptr().cast::<u8>(),
                nbytes,
            )
        };
        let dtype = CString::new(array.dtype.name()).unwrap_or_default();
        let mut owned = Box::new(OwnedNdArray {
            array: academy_ndarray {
                dtype: dtype.as_ptr(),
                kind: array.dtype.kind.letter() as c_char,
                itemsize: array.dtype.itemsize,
                ndim: array.shape.len(),
                shape: std::ptr::null(),
                order: array.layout.letter() as c_char,
                data: std::ptr::null_mut(),
                nbytes,
            },
            dtype,
            shape: array.shape,
            data,
        });
        if !owned.shape.is_empty() {
            owned.array.shape = owned.shape.as_ptr();
        }
        owned.array.data = owned.data.as_mut_ptr().cast::<c_void>();
        owned
    }
}

/// The JSON text `json` parsed, and the value at `pointer` in it.
fn value_at(json: *const c_char, pointer: *const c_char) -> Result<Value> {
    // SAFETY: C strings checked by arg_str / arg_opt_str.
    let text = unsafe { arg_str(json, "json") }?;
    let pointer = unsafe { arg_opt_str(pointer, "pointer") }?.unwrap_or("");
    let whole = parse_json("json", text)?;
    Ok(pyvalue::at_pointer(&whole, pointer)?.clone())
}

/// Finds the value at a JSON pointer inside JSON text.
///
/// For example the first positional argument of a handler's `args_json` is
/// at "/0", and key "b" of key "a" of a result at "/a/b".
///
/// @param json the JSON text (Python's NaN and Infinity are read too). Not
///        NULL.
/// @param pointer an RFC 6901 JSON pointer: "" is the whole text, "/0" the
///        first item of an array, "/a/b" key "b" of key "a" ("~1" stands for
///        '/' and "~0" for '~' in a key); NULL means "".
/// @param[out] out_json receives the value's JSON text on success; the caller
///        frees it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument,
///         malformed JSON, a malformed pointer, or nothing at the pointer.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_json_get(
    json: *const c_char,
    pointer: *const c_char,
    out_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_json, "out_json")?;
        let value = value_at(json, pointer)?;
        write_string(out_json, value.to_string())
    })
}

/// Reads a numpy array, in its JSON form `{"py/ndarray": {...}}`, as a typed
/// buffer.
///
/// The form is what a handler sees for a numpy array argument and what a
/// call returns for a numpy array result. The elements are copied into the
/// new ::academy_ndarray, swapped into this machine's byte order if they
/// travelled in the other.
///
/// @param json JSON text that holds the form. Not NULL.
/// @param pointer where the form is in `json`, as an RFC 6901 JSON pointer
///        (see academy_json_get()), e.g. "/0" for a handler's first
///        positional argument; NULL or "" for the whole text.
/// @param[out] out_array receives the array on success; the program frees it
///        with academy_ndarray_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument,
///         malformed JSON or pointer, nothing at the pointer, a value that is
///         not the py/ndarray form, a dtype that is not bool, integer,
///         unsigned integer, float or complex (the text names the dtype,
///         e.g. "<U5" for strings or "<M8[ns]" for datetimes), or data whose
///         length does not match the dtype and shape.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_ndarray_read(
    json: *const c_char,
    pointer: *const c_char,
    out_array: *mut *mut academy_ndarray,
) -> academy_status {
    boundary(|| {
        check_out(out_array, "out_array")?;
        let array = NdArray::from_form(&value_at(json, pointer)?)?;
        let owned = OwnedNdArray::new(array);
        // The array is the first field of the #[repr(C)] allocation.
        write_out(out_array, Box::into_raw(owned).cast::<academy_ndarray>());
        Ok(())
    })
}

/// Frees an array from academy_ndarray_read(), with its dtype, shape and
/// data.
///
/// @param array the array, owned by the program and given up here; NULL is
///        a no-op. Freeing an array twice is undefined behaviour (arrays are
///        plain memory, not checked handles).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe: from any thread, once, and not while another
/// thread still reads the array.
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_ndarray_free(array: *mut academy_ndarray) {
    boundary_or((), || {
        if !array.is_null() {
            drop(Box::from_raw(array.cast::<OwnedNdArray>()));
        }
    })
}

/// Writes the JSON form of a numpy array, `{"py/ndarray": {...}}`, to pass as
/// an argument or return as a result (a Python peer receives a
/// numpy.ndarray, in numpy 1.x and 2.x).
///
/// @param dtype numpy's `dtype.str` of the elements: "<f8", "<i4", "|u1",
///        "|b1", "<c16", ...; "=f8" and "f8" mean this machine's byte order;
///        ">f8" says `data` holds big-endian numbers (they are not swapped).
///        Only bool, integer, unsigned integer, float and complex dtypes.
///        Not NULL.
/// @param ndim the number of dimensions; 0 for a 0-d array (one element).
/// @param shape `ndim` sizes; may be NULL when `ndim` is 0.
/// @param order 'C' (row-major) or 'F' (column-major): how `data` is laid
///        out.
/// @param data product(shape) * itemsize bytes of elements, copied; only
///        read. May be NULL when that product is 0.
/// @param[out] out_json receives the JSON form on success; the caller frees
///        it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument
///         (`shape` with `ndim` > 0, `data` with elements), a dtype that is
///         not of those kinds (the text names it), an `order` other than 'C'
///         or 'F', or a shape whose size does not fit in memory.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state); `data` must not change
/// during the call.
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_ndarray_write(
    dtype: *const c_char,
    ndim: usize,
    shape: *const usize,
    order: c_char,
    data: *const c_void,
    out_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_json, "out_json")?;
        let dtype = Dtype::parse(arg_str(dtype, "dtype")?)?;
        let shape = match (ndim, shape.is_null()) {
            (0, _) => Vec::new(),
            (_, true) => return Err(Error::invalid("shape must not be NULL when ndim > 0")),
            (n, false) => std::slice::from_raw_parts(shape, n).to_vec(),
        };
        let layout = Layout::from_letter(order as u8 as char)?;
        let nbytes = byte_count(&shape, dtype.itemsize)?;
        let bytes = raw_bytes(data, nbytes, "data")?;
        let array = NdArray::new(dtype, shape, layout, bytes.to_vec())?;
        write_string(out_json, array.to_form().to_string())
    })
}

/// `len` bytes at `data` (which may be NULL only when `len` is 0).
unsafe fn raw_bytes<'a>(data: *const c_void, len: usize, name: &str) -> Result<&'a [u8]> {
    match (data.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(Error::invalid(format!(
            "{name} must not be NULL when it holds bytes"
        ))),
        (false, n) => Ok(std::slice::from_raw_parts(data.cast::<u8>(), n)),
    }
}

/// Reads Python `bytes` or `bytearray`, in their JSON forms
/// `{"py/bytes": "AP9h"}` / `{"py/bytearray": "AP9h"}` (base64), as bytes.
///
/// @param json JSON text that holds the form. Not NULL.
/// @param pointer where the form is in `json`, as an RFC 6901 JSON pointer
///        (see academy_json_get()); NULL or "" for the whole text.
/// @param[out] out_data receives the bytes on success; the program frees
///        them with academy_bytes_free(). Never NULL on success, also for no
///        bytes. Not NULL.
/// @param[out] out_len receives the number of bytes on success. Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL argument,
///         malformed JSON or pointer, nothing at the pointer, or a value that
///         is neither form (or whose data is not base64).
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state).
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_bytes_read(
    json: *const c_char,
    pointer: *const c_char,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> academy_status {
    boundary(|| {
        check_out(out_data, "out_data")?;
        check_out(out_len, "out_len")?;
        let bytes = pyvalue::bytes_from_form(&value_at(json, pointer)?)?;
        let len = bytes.len();
        let data = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
        write_out(out_data, data);
        write_out(out_len, len);
        Ok(())
    })
}

/// Frees bytes from academy_bytes_read().
///
/// @param data the bytes, owned by the program and given up here; NULL is a
///        no-op. Freeing them twice is undefined behaviour.
/// @param len the length academy_bytes_read() gave with them.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe: from any thread, once.
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_bytes_free(data: *mut u8, len: usize) {
    boundary_or((), || {
        if !data.is_null() {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)));
        }
    })
}

/// Writes the JSON form of Python `bytes`, `{"py/bytes": "AP9h"}` (base64), to
/// pass as an argument or return as a result (a Python peer receives
/// `bytes`).
///
/// @param data `len` bytes, copied; only read. May be NULL when `len` is 0.
/// @param len the number of bytes.
/// @param[out] out_json receives the JSON form on success; the caller frees
///        it with academy_string_free(). Not NULL.
/// @return ACADEMY_OK; ACADEMY_ERR_INVALID_ARGUMENT for a NULL `out_json`, or
///         a NULL `data` with `len` > 0.
///
/// Blocks: no.
///
/// Thread-safety: thread-safe (no shared state); `data` must not change
/// during the call.
/// @ingroup pyvalues
#[no_mangle]
pub unsafe extern "C" fn academy_bytes_write(
    data: *const c_void,
    len: usize,
    out_json: *mut *mut c_char,
) -> academy_status {
    boundary(|| {
        check_out(out_json, "out_json")?;
        let bytes = raw_bytes(data, len, "data")?;
        write_string(out_json, pyvalue::bytes_form(bytes).to_string())
    })
}
