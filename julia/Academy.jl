# Academy.jl: Julia wrappers of libacademy through ccall.
#
# Not run here: no Julia toolchain can be installed on this project's
# machines. tests/py/ctypes_agent.py loads the library the same way ccall
# does (dlopen + C calls) and is run by the test suite.
#
#   push!(LOAD_PATH, "julia"); using Academy
#   ENV["LIBACADEMY"] = "target/release/libacademy.so"
module Academy

export Factory, Client, Exchange, AcademyError, user_client, agent_client, register_agent,
       mailbox_id, send_message, recv_message, status, terminate, discover, action, ping,
       shutdown_agent, close!, spawn_exchange, url

const lib = get(ENV, "LIBACADEMY", "libacademy")

struct AcademyError <: Exception
    status::Cint
    message::String
end
Base.showerror(io::IO, e::AcademyError) =
    print(io, "academy: ", unsafe_string(ccall((:academy_status_str, lib), Cstring, (Cint,), e.status)), ": ", e.message)

function check(status::Cint)
    status == 0 || throw(AcademyError(status, unsafe_string(ccall((:academy_last_error, lib), Cstring, ()))))
    nothing
end

function take(p::Ptr{UInt8})
    s = unsafe_string(p)
    ccall((:academy_string_free, lib), Cvoid, (Ptr{UInt8},), p)
    s
end

mutable struct Factory
    ptr::Ptr{Cvoid}
end
mutable struct Client
    ptr::Ptr{Cvoid}
end
mutable struct Exchange
    ptr::Ptr{Cvoid}
end


function Factory(url::AbstractString; options::Union{Nothing,AbstractString}=nothing)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_http_factory_new, lib), Cint, (Cstring, Cstring, Ref{Ptr{Cvoid}}),
                url, options === nothing ? C_NULL : options, out))
    f = Factory(out[])
    finalizer(f -> ccall((:academy_factory_free, lib), Cvoid, (Ptr{Cvoid},), f.ptr), f)
end

function client(out)
    c = Client(out[])
    finalizer(c -> ccall((:academy_client_free, lib), Cvoid, (Ptr{Cvoid},), c.ptr), c)
end

function user_client(f::Factory, name::Union{Nothing,AbstractString}=nothing)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_user_client_new, lib), Cint, (Ptr{Cvoid}, Cstring, Ref{Ptr{Cvoid}}),
                f.ptr, name === nothing ? C_NULL : name, out))
    client(out)
end

function agent_client(f::Factory, registration::AbstractString)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_agent_client_new, lib), Cint, (Ptr{Cvoid}, Cstring, Ref{Ptr{Cvoid}}), f.ptr, registration, out))
    client(out)
end

function out_string(f)
    out = Ref{Ptr{UInt8}}(C_NULL)
    check(f(out))
    take(out[])
end

mailbox_id(c::Client) = out_string(o -> ccall((:academy_client_mailbox_id, lib), Cint, (Ptr{Cvoid}, Ref{Ptr{UInt8}}), c.ptr, o))
register_agent(c::Client, types::AbstractString, name=nothing) = out_string(o -> ccall((:academy_client_register_agent, lib), Cint,
    (Ptr{Cvoid}, Cstring, Cstring, Ref{Ptr{UInt8}}), c.ptr, types, name === nothing ? C_NULL : name, o))
send_message(c::Client, message::AbstractString) = check(ccall((:academy_client_send, lib), Cint, (Ptr{Cvoid}, Cstring), c.ptr, message))
recv_message(c::Client, timeout_s::Real=-1) = out_string(o -> ccall((:academy_client_recv, lib), Cint,
    (Ptr{Cvoid}, Cdouble, Ref{Ptr{UInt8}}), c.ptr, timeout_s, o))
function status(c::Client, id::AbstractString)
    out = Ref{Cint}(0)
    check(ccall((:academy_client_status, lib), Cint, (Ptr{Cvoid}, Cstring, Ref{Cint}), c.ptr, id, out))
    (:missing, :active, :inactive, :terminated)[out[] + 1]
end
terminate(c::Client, id::AbstractString) = check(ccall((:academy_client_terminate, lib), Cint, (Ptr{Cvoid}, Cstring), c.ptr, id))
discover(c::Client, agent_type::AbstractString; allow_subclasses::Bool=true) = out_string(o -> ccall((:academy_client_discover, lib),
    Cint, (Ptr{Cvoid}, Cstring, Bool, Ref{Ptr{UInt8}}), c.ptr, agent_type, allow_subclasses, o))
action(c::Client, agent_id::AbstractString, name::AbstractString; args="[]", kwargs="{}", timeout_s::Real=-1) =
    out_string(o -> ccall((:academy_client_action, lib), Cint, (Ptr{Cvoid}, Cstring, Cstring, Cstring, Cstring, Cdouble, Ref{Ptr{UInt8}}),
                          c.ptr, agent_id, name, args, kwargs, timeout_s, o))
function ping(c::Client, agent_id::AbstractString; timeout_s::Real=-1)
    rtt = Ref{Cdouble}(0)
    check(ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble, Ref{Cdouble}), c.ptr, agent_id, timeout_s, rtt))
    rtt[]
end
shutdown_agent(c::Client, agent_id::AbstractString; terminate::Integer=-1) =
    check(ccall((:academy_client_shutdown_agent, lib), Cint, (Ptr{Cvoid}, Cstring, Cint), c.ptr, agent_id, terminate))
close!(c::Client) = check(ccall((:academy_client_close, lib), Cint, (Ptr{Cvoid},), c.ptr))

function spawn_exchange(options::Union{Nothing,AbstractString}=nothing)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_exchange_spawn, lib), Cint, (Cstring, Ref{Ptr{Cvoid}}), options === nothing ? C_NULL : options, out))
    e = Exchange(out[])
    finalizer(e -> ccall((:academy_exchange_free, lib), Cvoid, (Ptr{Cvoid},), e.ptr), e)
end
url(e::Exchange) = out_string(o -> ccall((:academy_exchange_url, lib), Cint, (Ptr{Cvoid}, Ref{Ptr{UInt8}}), e.ptr, o))

# Serving from Julia (academy_agent_serve) calls back on library threads,
# which Julia's @cfunction callbacks do not allow outside Julia threads;
# serve agents from C, Go or Python and call them from Julia.

end
