# Python values: a Python value that JSON has no form for reaches handlers,
# and leaves them, in the library's JSON forms (the README's "Python values"
# section), e.g. {"py/ndarray": {"dtype": "<f8", "shape": [2, 3], "order":
# "C", "data": "<base64>"}} and {"py/bytes": "<base64>"}. These read and
# write numpy arrays as Julia `Array`s and bytes as `Vector{UInt8}`, through
# the library (academy_ndarray_read, academy_ndarray_write, academy_bytes_*).

"""
The C layout of `struct academy_ndarray` (include/academy.h): the same
fields, in the same order, with the same C types. The library owns it;
`read_ndarray` copies the elements out and frees it.
"""
struct CNDArray
    dtype::Ptr{UInt8}
    kind::Cchar
    itemsize::Csize_t
    ndim::Csize_t
    shape::Ptr{Csize_t}
    order::Cchar
    data::Ptr{Cvoid}
    nbytes::Csize_t
end

"numpy's (kind, itemsize) of each element type an array can have."
const DTYPES = Dict{DataType,Tuple{Char,Int}}(
    Bool => ('b', 1), Int8 => ('i', 1), Int16 => ('i', 2), Int32 => ('i', 4), Int64 => ('i', 8),
    UInt8 => ('u', 1), UInt16 => ('u', 2), UInt32 => ('u', 4), UInt64 => ('u', 8),
    Float16 => ('f', 2), Float32 => ('f', 4), Float64 => ('f', 8), ComplexF32 => ('c', 8), ComplexF64 => ('c', 16))
const ELTYPES = Dict(v => k for (k, v) in DTYPES)

"numpy's dtype of `T` in the machine's byte order, as `academy_ndarray_write` takes it (\"=f8\", \"|b1\")."
function dtype_of(::Type{T}) where {T}
    kind, size = get(DTYPES, T) do
        throw(ArgumentError("an array's elements are Bool, integers, Float16/32/64 or ComplexF32/64, not $T"))
    end
    string(size == 1 ? '|' : '=', kind, size)
end

"""
    read_ndarray(json; pointer="") -> Array{T,N}
    read_ndarray(T, json; pointer="") -> Array{T,N}

Reads the numpy array at `pointer` (an RFC 6901 JSON pointer: `""` the
whole text, `"/0"` the first item of a handler's `args`) of `json` into a
new `Array` whose element type is the dtype's (`Float64` for `"<f8"`,
`Bool`, `Int8`...`Int64`, `UInt8`...`UInt64`, `Float16`/`32`, `ComplexF32`/`64`;
with `T`, it must be `T`) and whose `N` is the number of dimensions.

Indices are numpy's: numpy's `a[i, j]` is `A[i+1, j+1]`, so a numpy array
of shape (2, 3) is a Julia 2×3 array with the same elements, whatever its
layout. A column-major (order "F") array is copied as it is; a row-major
(order "C", numpy's default) one is read as its reversed shape and put back
with `permutedims` (one copy either way). A 0-d array is an `Array{T,0}`.
Throws `AcademyError` (`ACADEMY_ERR_INVALID_ARGUMENT`) for any other value.
"""
function read_ndarray(json::AbstractString; pointer::AbstractString="")
    out = Ref{Ptr{CNDArray}}(C_NULL)
    check(ccall((:academy_ndarray_read, lib), Cint, (Cstring, Cstring, Ref{Ptr{CNDArray}}), json, pointer, out))
    try
        elements(unsafe_load(out[]))
    finally
        ccall((:academy_ndarray_free, lib), Cvoid, (Ptr{CNDArray},), out[])
    end
end

function read_ndarray(::Type{T}, json::AbstractString; pointer::AbstractString="") where {T}
    A = read_ndarray(json; pointer=pointer)
    eltype(A) === T || throw(AcademyError(ACADEMY_ERR_INVALID_ARGUMENT,
                                          "the array's elements are $(eltype(A)), not $T"))
    A
end

# A Julia copy of the array `c` describes (still the library's).
function elements(c::CNDArray)
    T = get(ELTYPES, (Char(c.kind), Int(c.itemsize)), nothing)
    T === nothing && throw(AcademyError(ACADEMY_ERR_INVALID_ARGUMENT,
                                        "no Julia element type for the dtype " * unsafe_string(c.dtype)))
    shape = Tuple(Int(unsafe_load(c.shape, k)) for k in 1:Int(c.ndim))
    n = prod(shape; init=1)
    n == 0 && return Array{T}(undef, shape)
    flat = if T === Bool
        # A byte other than 0 or 1 is no Bool: compare, not reinterpret.
        unsafe_wrap(Array, Ptr{UInt8}(c.data), n) .!= 0
    else
        copy(unsafe_wrap(Array, Ptr{T}(c.data), n))
    end
    if c.order == Cchar('C') && length(shape) > 1
        # Row-major: the same bytes are the column-major array of the reversed shape.
        permutedims(reshape(flat, reverse(shape)), ntuple(k -> length(shape) + 1 - k, length(shape)))
    else
        reshape(flat, shape)
    end
end

"""
    ndarray_json(A::AbstractArray) -> String

The JSON form of `A` (for a result or an argument): a numpy array of shape
`size(A)` and the same elements at the same indices, written column-major
(order "F", no reordering). Element types as for `read_ndarray`.
"""
function ndarray_json(A::AbstractArray{T}) where {T}
    dtype = dtype_of(T)
    data = Array{T}(A)  # dense and column-major (a view, a range, a transpose)
    shape = Csize_t[size(A)...]
    out_string(o -> ccall((:academy_ndarray_write, lib), Cint,
                          (Cstring, Csize_t, Ptr{Csize_t}, Cchar, Ptr{Cvoid}, Ref{Ptr{UInt8}}),
                          dtype, length(shape), shape, Cchar('F'), data, o))
end

"""
    read_bytes(json; pointer="") -> Vector{UInt8}

The bytes of a `{"py/bytes": ...}` or `{"py/bytearray": ...}` form at
`pointer` of `json`.
"""
function read_bytes(json::AbstractString; pointer::AbstractString="")
    data = Ref{Ptr{UInt8}}(C_NULL)
    len = Ref{Csize_t}(0)
    check(ccall((:academy_bytes_read, lib), Cint, (Cstring, Cstring, Ref{Ptr{UInt8}}, Ref{Csize_t}),
                json, pointer, data, len))
    bytes = len[] == 0 ? UInt8[] : copy(unsafe_wrap(Array, data[], len[]))
    ccall((:academy_bytes_free, lib), Cvoid, (Ptr{UInt8}, Csize_t), data[], len[])
    bytes
end

"`{\"py/bytes\": ...}` of `bytes` (a `Vector{UInt8}`, or a `String`'s code units)."
function bytes_json(bytes::AbstractVector{UInt8})
    data = Vector{UInt8}(bytes)
    out_string(o -> ccall((:academy_bytes_write, lib), Cint, (Ptr{Cvoid}, Csize_t, Ref{Ptr{UInt8}}),
                          data, length(data), o))
end
bytes_json(s::AbstractString) = bytes_json(codeunits(String(s)))

"""
    json_get(json, pointer) -> String

The value at `pointer` (RFC 6901; `~1` stands for `/` in a key) of `json`,
as JSON text: `json_get(args, "/1")` is a handler's second argument,
`json_get(t, "/py~1tuple/0")` the first item of a tuple.
"""
json_get(json::AbstractString, pointer::AbstractString) =
    out_string(o -> ccall((:academy_json_get, lib), Cint, (Cstring, Cstring, Ref{Ptr{UInt8}}), json, pointer, o))

"`{\"py/tuple\": [...]}` of items given as JSON text: `py_tuple(\"1\", ndarray_json(A))`."
py_tuple(items::AbstractString...) = string("{\"py/tuple\": [", join(items, ", "), "]}")
