# Academy.jl: Julia bindings of libacademy (include/academy.h) through ccall.
#
# Not run here: no Julia toolchain can be installed on this project's
# machines. tests/julia_static.rs checks every ccall below against the
# header (name, argument count, C type kinds) and the CEvent and CNDArray
# mirrors against `struct academy_event` and `struct academy_ndarray`;
# tests/py/ctypes_agent.py and ctypes_asyncio.py drive the same C calls
# (dlopen, an fd in an event loop) from Python.
#
#   julia> import Pkg; Pkg.develop(path="julia"); Pkg.test("Academy")
#   julia> using Academy
#
# The library: ENV["LIBACADEMY"] (a path) when the package is precompiled,
# else target/release/libacademy.so of this repository if it was built,
# else "libacademy" from the system's library path.
module Academy

using FileWatching: poll_fd
using Libdl: dlext, dlopen

# ACADEMY_* constants, generated from include/academy.h (do not copy numbers here).
include("constants.jl")

export Factory, Client, Exchange, Queue, Call, Serving, AcademyError,
       user_client, agent_client, register_agent, mailbox_id, send_message, recv_message,
       status, terminate, discover, action, ping, request, shutdown_agent, close!,
       spawn_exchange, url, version, status_str, status_name, message_new,
       action_async, ping_async, request_async, listen, serve, stop, cancelled,
       read_ndarray, ndarray_json, read_bytes, bytes_json, json_get, py_tuple

const lib = let path = get(ENV, "LIBACADEMY", "")
    built = normpath(joinpath(@__DIR__, "..", "..", "target", "release", "libacademy." * dlext))
    !isempty(path) ? path : isfile(built) ? built : "libacademy"
end

function __init__()
    # Fails early, with the path, when the library is missing.
    dlopen(lib)
    default_queue[] = nothing
    nothing
end

# --- statuses and errors --------------------------------------------------

"A failed libacademy call: its status (an `ACADEMY_ERR_*` constant) and `academy_last_error`'s text."
struct AcademyError <: Exception
    status::Cint
    message::String
end

"The text of a status code, e.g. \"timeout\" for `ACADEMY_ERR_TIMEOUT`."
status_str(status::Integer) = unsafe_string(ccall((:academy_status_str, lib), Cstring, (Cint,), status))
"The header's name of a status code, e.g. \"ACADEMY_ERR_TIMEOUT\"."
status_name(status::Integer) = unsafe_string(ccall((:academy_status_name, lib), Cstring, (Cint,), status))
"The library's version, e.g. v\"0.1.0\" (the header's is `ACADEMY_VERSION`)."
version() = VersionNumber(unsafe_string(ccall((:academy_version, lib), Cstring, ())))

Base.showerror(io::IO, e::AcademyError) =
    print(io, "academy: ", status_name(e.status), " (", status_str(e.status), "): ", e.message)

last_error() = unsafe_string(ccall((:academy_last_error, lib), Cstring, ()))

# academy_last_error is per OS thread: read it right after the failed call,
# with no yield point in between (a task only switches at yield points).
function check(status::Cint)
    status == ACADEMY_OK || throw(AcademyError(status, last_error()))
    nothing
end

function take(p::Ptr{UInt8})
    s = unsafe_string(p)
    ccall((:academy_string_free, lib), Cvoid, (Ptr{UInt8},), p)
    s
end

function out_string(f)
    out = Ref{Ptr{UInt8}}(C_NULL)
    check(f(out))
    take(out[])
end

nullable(s) = s === nothing ? C_NULL : s

# --- Python values (numpy arrays, bytes) -----------------------------------

include("values.jl")

# --- handles --------------------------------------------------------------

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
                url, nullable(options), out))
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
                f.ptr, nullable(name), out))
    client(out)
end

function agent_client(f::Factory, registration::AbstractString)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_agent_client_new, lib), Cint, (Ptr{Cvoid}, Cstring, Ref{Ptr{Cvoid}}),
                f.ptr, registration, out))
    client(out)
end

# --- blocking calls (they hold the calling thread) ------------------------

mailbox_id(c::Client) = out_string(o -> ccall((:academy_client_mailbox_id, lib), Cint,
    (Ptr{Cvoid}, Ref{Ptr{UInt8}}), c.ptr, o))
register_agent(c::Client, types::AbstractString, name=nothing) = out_string(o -> ccall((:academy_client_register_agent, lib), Cint,
    (Ptr{Cvoid}, Cstring, Cstring, Ref{Ptr{UInt8}}), c.ptr, types, nullable(name), o))
send_message(c::Client, message::AbstractString) =
    check(ccall((:academy_client_send, lib), Cint, (Ptr{Cvoid}, Cstring), c.ptr, message))
"Blocks the thread up to `timeout_s`; in a program with tasks, prefer `listen`."
recv_message(c::Client, timeout_s::Real=-1) = out_string(o -> ccall((:academy_client_recv, lib), Cint,
    (Ptr{Cvoid}, Cdouble, Ref{Ptr{UInt8}}), c.ptr, timeout_s, o))

const MAILBOX_STATUS = Dict(ACADEMY_MAILBOX_MISSING => :missing, ACADEMY_MAILBOX_ACTIVE => :active,
                            ACADEMY_MAILBOX_INACTIVE => :inactive, ACADEMY_MAILBOX_TERMINATED => :terminated)
function status(c::Client, id::AbstractString)
    out = Ref{Cint}(0)
    check(ccall((:academy_client_status, lib), Cint, (Ptr{Cvoid}, Cstring, Ref{Cint}), c.ptr, id, out))
    MAILBOX_STATUS[out[]]
end
terminate(c::Client, id::AbstractString) =
    check(ccall((:academy_client_terminate, lib), Cint, (Ptr{Cvoid}, Cstring), c.ptr, id))
discover(c::Client, agent_type::AbstractString; allow_subclasses::Bool=true) = out_string(o -> ccall((:academy_client_discover, lib),
    Cint, (Ptr{Cvoid}, Cstring, Bool, Ref{Ptr{UInt8}}), c.ptr, agent_type, allow_subclasses, o))
shutdown_agent(c::Client, agent_id::AbstractString; terminate::Integer=-1) =
    check(ccall((:academy_client_shutdown_agent, lib), Cint, (Ptr{Cvoid}, Cstring, Cint), c.ptr, agent_id, terminate))
close!(c::Client) = check(ccall((:academy_client_close, lib), Cint, (Ptr{Cvoid},), c.ptr))

"A message from `src` to `dest` (ids as JSON) with `body` (a JSON object with a `kind`)."
message_new(src::AbstractString, dest::AbstractString, body::AbstractString) = out_string(o -> ccall((:academy_message_new, lib),
    Cint, (Cstring, Cstring, Cstring, Ref{Ptr{UInt8}}), src, dest, body, o))

function spawn_exchange(options::Union{Nothing,AbstractString}=nothing)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_exchange_spawn, lib), Cint, (Cstring, Ref{Ptr{Cvoid}}), nullable(options), out))
    e = Exchange(out[])
    finalizer(e -> ccall((:academy_exchange_free, lib), Cvoid, (Ptr{Cvoid},), e.ptr), e)
end
url(e::Exchange) = out_string(o -> ccall((:academy_exchange_url, lib), Cint, (Ptr{Cvoid}, Ref{Ptr{UInt8}}), e.ptr, o))
close!(e::Exchange) = check(ccall((:academy_exchange_stop, lib), Cint, (Ptr{Cvoid},), e.ptr))

# --- completion queues ----------------------------------------------------

"""
The C layout of `struct academy_event` (include/academy.h): the same fields,
in the same order, with the same C types (enums are `int`). The library owns
it; `next_events!` copies it into an `AcademyEvent` and frees it.
"""
struct CEvent
    kind::Cint
    token::UInt64
    status::Cint
    json::Ptr{UInt8}
    error::Ptr{UInt8}
    rtt_s::Cdouble
    action::Ptr{UInt8}
    args_json::Ptr{UInt8}
    kwargs_json::Ptr{UInt8}
    reply::Ptr{Cvoid}
end

"An event copied out of the library (strings are Julia's; `reply` is the program's until completed)."
struct AcademyEvent
    kind::Cint
    token::UInt64
    status::Cint
    json::Union{Nothing,String}
    error::Union{Nothing,String}
    rtt_s::Float64
    action::Union{Nothing,String}
    args_json::Union{Nothing,String}
    kwargs_json::Union{Nothing,String}
    reply::Ptr{Cvoid}
end

maybe_string(p::Ptr{UInt8}) = p == C_NULL ? nothing : unsafe_string(p)

function AcademyEvent(p::Ptr{CEvent})
    c = unsafe_load(p)
    e = AcademyEvent(c.kind, c.token, c.status, maybe_string(c.json), maybe_string(c.error), c.rtt_s,
              maybe_string(c.action), maybe_string(c.args_json), maybe_string(c.kwargs_json), c.reply)
    ccall((:academy_event_free, lib), Cvoid, (Ptr{CEvent},), p)
    e
end

"""
    Queue()

A completion queue. Calls (`action_async`, ...), `listen` and `serve` post
their events to it; a task of this module waits on the queue's fd with
`FileWatching.poll_fd` (so it blocks no thread and runs no code on library
threads), takes the events and hands each to the task waiting for it.
Free it with `close(q)`; a finalizer frees it otherwise.
"""
mutable struct Queue
    ptr::Ptr{Cvoid}
    fd::RawFD
    lock::ReentrantLock
    next_token::UInt64
    sinks::Dict{UInt64,Channel{AcademyEvent}}
    pump::Union{Nothing,Task}
    closed::Bool
end

function Queue()
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:academy_queue_new, lib), Cint, (Ref{Ptr{Cvoid}},), out))
    fd = Ref{Cint}(-1)
    st = ccall((:academy_queue_fd, lib), Cint, (Ptr{Cvoid}, Ref{Cint}), out[], fd)
    err = st == ACADEMY_OK ? nothing : AcademyError(st, last_error())
    if err !== nothing
        ccall((:academy_queue_free, lib), Cvoid, (Ptr{Cvoid},), out[])
        throw(err)
    end
    q = Queue(out[], RawFD(fd[]), ReentrantLock(), 0, Dict{UInt64,Channel{AcademyEvent}}(), nothing, false)
    # A running pump task references q, so the finalizer only runs when no task watches the fd.
    finalizer(q -> q.closed || ccall((:academy_queue_free, lib), Cvoid, (Ptr{Cvoid},), q.ptr), q)
end

"Frees the queue: stops its pump task, then frees it; calls still waiting on it fail with CLOSED."
function Base.close(q::Queue)
    was_closed, pump = lock(q.lock) do
        was_closed = q.closed
        q.closed = true
        (was_closed, q.pump)
    end
    was_closed && return nothing
    pump === nothing || wait(pump)
    lock(q.lock) do
        for sink in values(q.sinks)
            close(sink)
        end
        empty!(q.sinks)
    end
    ccall((:academy_queue_free, lib), Cvoid, (Ptr{Cvoid},), q.ptr)
    nothing
end

# Registers a sink for a new token (the token the C call will carry).
function register!(q::Queue, sink::Channel{AcademyEvent})
    lock(q.lock) do
        q.closed && throw(AcademyError(ACADEMY_ERR_CLOSED, "the queue is closed"))
        q.next_token += 1
        q.sinks[q.next_token] = sink
        q.next_token
    end
end

# Starts the C call `start(token)`; on failure forgets the token and throws.
function start!(start, q::Queue, sink::Channel{AcademyEvent})
    token = register!(q, sink)
    st = start(token)
    err = st == ACADEMY_OK ? nothing : AcademyError(st, last_error())
    if err !== nothing
        lock(() -> delete!(q.sinks, token), q.lock)
        throw(err)
    end
    lock(q.lock) do
        q.pump === nothing && (q.pump = @async pump(q))
    end
    token
end

# Takes every waiting event without blocking: academy_queue_poll(q, 0, ...) until TIMEOUT.
function next_events!(q::Queue)
    out = Ref{Ptr{CEvent}}(C_NULL)
    while true
        st = ccall((:academy_queue_poll, lib), Cint, (Ptr{Cvoid}, Cdouble, Ref{Ptr{CEvent}}), q.ptr, 0.0, out)
        st == ACADEMY_ERR_TIMEOUT && return
        err = st == ACADEMY_OK ? nothing : AcademyError(st, last_error())
        err === nothing || throw(err)
        deliver!(q, AcademyEvent(out[]))
    end
end

function deliver!(q::Queue, e::AcademyEvent)
    last = e.kind == ACADEMY_EVENT_CALL || e.kind == ACADEMY_EVENT_ENDED
    sink = lock(q.lock) do
        s = get(q.sinks, e.token, nothing)
        last && delete!(q.sinks, e.token)
        s
    end
    if sink === nothing
        # Nobody waits (the task gave up): answer a request so that its caller does not wait.
        e.kind == ACADEMY_EVENT_REQUEST && reply_error(e.reply, "no handler for this request")
    else
        put!(sink, e)  # never blocks: a call gets one event, listen and serve sinks are unbounded
    end
    nothing
end

# The queue's pump: runs while some call, listen or serving waits on the queue.
function pump(q::Queue)
    try
        while true
            next_events!(q)
            done = lock(q.lock) do
                (q.closed || isempty(q.sinks)) || return false
                q.pump = nothing
                true
            end
            done && return
            # Wakes when the fd is readable, and every 0.25 s to see `close(q)`.
            poll_fd(q.fd, 0.25; readable=true)
        end
    catch err
        lock(q.lock) do
            for sink in values(q.sinks)
                close(sink, err)
            end
            empty!(q.sinks)
            q.pump = nothing
        end
    end
end

const default_queue = Ref{Union{Nothing,Queue}}(nothing)
const default_queue_lock = ReentrantLock()
"The queue that calls use when given none: one per process, made at first use."
function shared_queue()
    lock(default_queue_lock) do
        q = default_queue[]
        (q === nothing || q.closed) && (q = default_queue[] = Queue())
        q
    end
end

# --- async calls ----------------------------------------------------------

"""
A call in flight. `fetch(call)` waits (as a task: the thread runs other
tasks meanwhile) and returns the result JSON (`action_async`), the response
message JSON (`request_async`) or the round trip in seconds (`ping_async`),
or throws `AcademyError`.
"""
struct Call
    kind::Symbol
    sink::Channel{AcademyEvent}
end

function Base.fetch(c::Call)
    e = try
        fetch(c.sink)
    catch err
        err isa InvalidStateException || rethrow()
        throw(AcademyError(ACADEMY_ERR_CLOSED, "the queue was closed before the call ended"))
    end
    e.status == ACADEMY_OK || throw(AcademyError(e.status, something(e.error, "")))
    c.kind === :ping ? e.rtt_s : something(e.json, "null")
end
Base.wait(c::Call) = (wait(c.sink); nothing)

function action_async(c::Client, agent_id::AbstractString, name::AbstractString; args="[]", kwargs="{}",
                      timeout_s::Real=-1, queue::Union{Nothing,Queue}=nothing)
    q = queue === nothing ? shared_queue() : queue
    sink = Channel{AcademyEvent}(1)
    start!(q, sink) do token
        ccall((:academy_client_action_async, lib), Cint,
              (Ptr{Cvoid}, Cstring, Cstring, Cstring, Cstring, Cdouble, Ptr{Cvoid}, UInt64),
              c.ptr, agent_id, name, args, kwargs, timeout_s, q.ptr, token)
    end
    Call(:action, sink)
end

function request_async(c::Client, dest::AbstractString, body::AbstractString; timeout_s::Real=-1,
                       queue::Union{Nothing,Queue}=nothing)
    q = queue === nothing ? shared_queue() : queue
    sink = Channel{AcademyEvent}(1)
    start!(q, sink) do token
        ccall((:academy_client_request_async, lib), Cint, (Ptr{Cvoid}, Cstring, Cstring, Cdouble, Ptr{Cvoid}, UInt64),
              c.ptr, dest, body, timeout_s, q.ptr, token)
    end
    Call(:request, sink)
end

function ping_async(c::Client, agent_id::AbstractString; timeout_s::Real=-1, queue::Union{Nothing,Queue}=nothing)
    q = queue === nothing ? shared_queue() : queue
    sink = Channel{AcademyEvent}(1)
    start!(q, sink) do token
        ccall((:academy_client_ping_async, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble, Ptr{Cvoid}, UInt64),
              c.ptr, agent_id, timeout_s, q.ptr, token)
    end
    Call(:ping, sink)
end

# The waiting forms: they wait as a task, so an agent served by this thread
# (`serve`) keeps answering while they wait.
"Calls an action and returns its result JSON (`args`: a JSON array, `kwargs`: a JSON object)."
action(c::Client, agent_id::AbstractString, name::AbstractString; kw...) = fetch(action_async(c, agent_id, name; kw...))
"Pings an agent; returns the round trip in seconds."
ping(c::Client, agent_id::AbstractString; kw...) = fetch(ping_async(c, agent_id; kw...))
"Sends a request (a request body JSON) and returns the whole response message JSON."
request(c::Client, dest::AbstractString, body::AbstractString; kw...) = fetch(request_async(c, dest, body; kw...))

# --- listening and serving ------------------------------------------------

"""
    listen(c::Client; queue=nothing) -> Channel{String}

Routes the messages of `c`'s mailbox that no call waits for to a channel
(as `academy_client_listen`), closed when listening ends (after `close!(c)`,
or with an `AcademyError` when the mailbox goes away).
"""
function listen(c::Client; queue::Union{Nothing,Queue}=nothing)
    q = queue === nothing ? shared_queue() : queue
    sink = Channel{AcademyEvent}(Inf)
    start!(q, sink) do token
        ccall((:academy_client_listen, lib), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64), c.ptr, q.ptr, token)
    end
    messages = Channel{String}(Inf)
    @async begin
        ended = nothing
        for e in sink
            if e.kind == ACADEMY_EVENT_MESSAGE
                put!(messages, something(e.json, ""))
            elseif e.kind == ACADEMY_EVENT_ENDED
                e.status in (ACADEMY_OK, ACADEMY_ERR_CLOSED) || (ended = AcademyError(e.status, something(e.error, "")))
                break
            end
        end
        ended === nothing ? close(messages) : close(messages, ended)
    end
    messages
end

reply_ok(reply::Ptr{Cvoid}, result_json::AbstractString) =
    ccall((:academy_reply_ok, lib), Cint, (Ptr{Cvoid}, Cstring), reply, result_json)
reply_error(reply::Ptr{Cvoid}, message::AbstractString) =
    ccall((:academy_reply_error, lib), Cint, (Ptr{Cvoid}, Cstring), reply, message)

"An agent served from this process: `wait(s)` returns the status serving ended with (`ACADEMY_OK` after a shutdown)."
struct Serving
    task::Task
end
Base.wait(s::Serving) = fetch(s.task)

"""
    cancelled() -> Bool

Inside a handler run by `serve` (in its own task, not in tasks it starts):
whether its request was answered without it (`academy_reply_cancelled`):
the caller cancelled it, serving ended, or the mailbox was terminated.
academy-py cancels a running action then; a Julia handler cannot be
interrupted, so a long one may ask now and then and return early (what it
returns is dropped). Throws `ArgumentError` outside a handler.
"""
function cancelled()
    reply = get(task_local_storage(), :academy_reply, nothing)
    reply === nothing && throw(ArgumentError("cancelled() asks about the request of a handler run by serve"))
    flag = Ref{Bool}(false)
    check(ccall((:academy_reply_cancelled, lib), Cint, (Ptr{Cvoid}, Ref{Bool}), reply, flag))
    flag[]
end

function answer(handler, e::AcademyEvent)
    # The reply stays open (and live) until the handler returns: cancelled() reads it.
    task_local_storage(:academy_reply, e.reply)
    result = try
        handler(e.action, something(e.args_json, "[]"), something(e.kwargs_json, "{}"))
    catch err
        reply_error(e.reply, sprint(showerror, err))
        return
    end
    # reply_ok keeps the reply on INVALID_ARGUMENT (not JSON), so it can still be answered.
    st = reply_ok(e.reply, string(result))
    st == ACADEMY_ERR_INVALID_ARGUMENT && reply_error(e.reply, "the handler's result is not JSON: " * string(result))
    nothing
end

"""
    serve(handler, c::Client; queue=nothing) -> Serving

Serves the agent of `c` (as `academy_agent_serve_queue`): the library answers
pings, shutdown and cancel requests; each action request runs
`handler(action, args_json, kwargs_json)` in its own task, which returns the
result as JSON text or throws (the caller gets a remote error); a long handler
may ask `cancelled()` now and then and stop early. Returns at once.
"""
function serve(handler, c::Client; queue::Union{Nothing,Queue}=nothing)
    q = queue === nothing ? shared_queue() : queue
    sink = Channel{AcademyEvent}(Inf)
    start!(q, sink) do token
        ccall((:academy_agent_serve_queue, lib), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, UInt64), c.ptr, q.ptr, token)
    end
    Serving(@async begin
        ended = ACADEMY_ERR_CLOSED
        for e in sink
            if e.kind == ACADEMY_EVENT_REQUEST
                @async answer(handler, e)
            elseif e.kind == ACADEMY_EVENT_ENDED
                ended = e.status
                break
            end
        end
        ended
    end)
end

"Ends the serving of `c` (`academy_agent_stop`); its `Serving` then ends with `ACADEMY_OK`."
stop(c::Client) = check(ccall((:academy_agent_stop, lib), Cint, (Ptr{Cvoid},), c.ptr))

end
