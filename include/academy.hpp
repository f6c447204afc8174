// academy.hpp: header-only C++ owners for libacademy (C++17).
//
// RAII types own factories, clients, exchanges, queues, events and
// returned strings; a failed call throws academy::Error carrying the
// status and academy_last_error(). Timeouts are academy::Timeout: a number
// of seconds or any std::chrono duration (Timeout::forever() for no limit).
// Handlers and callbacks are std::function. Python values (numpy arrays,
// bytes) are read and written through academy::NDArray, ndarray_write,
// bytes_read and bytes_write, with std::span views under C++20. Written
// by hand on top of
// academy.h: every function of academy.h has a wrapper here (checked by
// tests/packaging.rs), so see academy.h for blocking, ownership and the
// statuses each call returns.
#ifndef ACADEMY_HPP
#define ACADEMY_HPP

#include <chrono>
#include <cmath>
#include <complex>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>
#if __cplusplus >= 202002L
#include <span>
#endif

#include "academy.h"

namespace academy {

/// A failed libacademy call.
class Error : public std::runtime_error {
public:
    Error(academy_status status, const std::string &detail)
        : std::runtime_error(std::string(academy_status_str(status)) + ": " + detail), status_(status) {}
    academy_status status() const noexcept { return status_; }

private:
    academy_status status_;
};

/// Throws academy::Error unless `status` is ACADEMY_OK.
inline void check(academy_status status) {
    if (status != ACADEMY_OK) throw Error(status, academy_last_error());
}

/// A timeout: seconds as a number (10, 0.5) or a std::chrono duration
/// (std::chrono::milliseconds(500)); negative means no limit, 0 means do
/// not wait, as in academy.h.
class Timeout {
public:
    Timeout(double seconds) : s_(seconds) {}  // NOLINT: implicit on purpose
    template <typename Rep, typename Period>
    Timeout(std::chrono::duration<Rep, Period> d)  // NOLINT: implicit on purpose
        : s_(std::chrono::duration<double>(d).count()) {}
    static Timeout forever() noexcept { return Timeout(-1.0); }
    double seconds() const noexcept { return s_; }

private:
    double s_;
};

/// The library's version, e.g. "0.1.0" (academy_version).
inline std::string version() { return academy_version(); }

/// The name of a status as in academy.h, e.g. "ACADEMY_ERR_TIMEOUT"
/// (academy_status_name); "unknown status" for any other number.
inline std::string status_name(int status) { return academy_status_name(status); }

/// A short text of a status, e.g. "timeout" (academy_status_str).
inline std::string status_str(int status) { return academy_status_str(status); }

/// Takes a string returned by libacademy (frees it with academy_string_free).
inline std::string take(char *s) {
    std::string out = s != nullptr ? s : "";
    academy_string_free(s);
    return out;
}

/// A move-only owner of a handle freed by `Free`.
template <typename T, void (*Free)(T *)>
class Owner {
public:
    Owner() = default;
    explicit Owner(T *p) : p_(p) {}
    Owner(Owner &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Owner &operator=(Owner &&o) noexcept {
        if (this != &o) {
            Free(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    Owner(const Owner &) = delete;
    Owner &operator=(const Owner &) = delete;
    ~Owner() { Free(p_); }
    T *get() const noexcept { return p_; }

private:
    T *p_ = nullptr;
};

/// An event taken from a Queue (read-only; freed with its owner). For a
/// REQUEST event, complete `event->reply` with academy_reply_ok/_error; the
/// reply outlives the event.
class Event {
public:
    /// Takes ownership of `e`: academy_event_free frees it with the Event.
    explicit Event(academy_event *e) : e_(e) {}
    const academy_event *operator->() const noexcept { return e_.get(); }
    const academy_event &operator*() const noexcept { return *e_.get(); }
    const academy_event *get() const noexcept { return e_.get(); }
    academy_event_kind kind() const noexcept { return e_.get()->kind; }
    std::uint64_t token() const noexcept { return e_.get()->token; }
    academy_status status() const noexcept { return e_.get()->status; }
    /// The round trip of a ping's CALL event.
    std::chrono::duration<double> rtt() const noexcept { return std::chrono::duration<double>(e_.get()->rtt_s); }
    /// The strings of the event, "" where academy.h says NULL.
    std::string json() const { return str(e_.get()->json); }
    std::string error() const { return str(e_.get()->error); }
    std::string action() const { return str(e_.get()->action); }
    std::string args_json() const { return str(e_.get()->args_json); }
    std::string kwargs_json() const { return str(e_.get()->kwargs_json); }
    /// A REQUEST event's reply (nullptr for other kinds): complete it once
    /// with academy::reply_ok or academy::reply_error; it outlives the event.
    academy_reply *reply() const noexcept { return e_.get()->reply; }
    /// Throws academy::Error with the event's status and error text unless
    /// its status is ACADEMY_OK (for CALL and ENDED events).
    void check() const {
        if (status() != ACADEMY_OK) throw Error(status(), error());
    }

private:
    static std::string str(const char *s) { return s != nullptr ? s : ""; }
    Owner<academy_event, academy_event_free> e_;
};

/// Completes an action request with its result JSON (academy_reply_ok;
/// "null" for none). Frees `reply` unless this throws INVALID_ARGUMENT.
inline void reply_ok(academy_reply *reply, const std::string &result_json) {
    check(academy_reply_ok(reply, result_json.c_str()));
}

/// Completes an action request with an error (academy_reply_error); a
/// Python caller raises AcademyRemoteError(message).
inline void reply_error(academy_reply *reply, const std::string &message) {
    check(academy_reply_error(reply, message.c_str()));
}

/// Whether the request of `reply` was answered without it (cancelled by its
/// caller, serving ended, or its mailbox terminated: academy_reply_cancelled);
/// a long handler may ask now and then and stop early. Complete it anyway.
inline bool reply_cancelled(academy_reply *reply) {
    bool cancelled = false;
    check(academy_reply_cancelled(reply, &cancelled));
    return cancelled;
}

/// An action handler for Client::serve: the action's name, its positional
/// (JSON array) and keyword (JSON object) arguments, and the reply to
/// complete exactly once (reply_ok / reply_error), then or later.
using ActionHandler =
    std::function<void(const std::string &action, const std::string &args_json, const std::string &kwargs_json,
                       academy_reply *reply)>;

/// Called once when a Client::send_async send ends: ACADEMY_OK, or the
/// status academy_client_send would have returned and its text.
using SendDone = std::function<void(academy_status status, const std::string &error)>;

/// Receives one log line (Client-independent; see set_log_callback).
using LogCallback =
    std::function<void(academy_log_level level, const std::string &target, const std::string &message)>;

namespace detail {
inline void action_trampoline(void *user_data, const char *action, const char *args_json, const char *kwargs_json,
                              academy_reply *reply) {
    auto &handler = *static_cast<ActionHandler *>(user_data);
    try {
        handler(action, args_json, kwargs_json, reply);
    } catch (const std::exception &e) {
        // An exception must not cross into the library: the caller sees it.
        academy_reply_error(reply, e.what());
    } catch (...) {
        academy_reply_error(reply, "the C++ handler threw");
    }
}

inline void send_done_trampoline(void *user_data, academy_status status, const char *error) {
    std::unique_ptr<SendDone> done(static_cast<SendDone *>(user_data));
    try {
        (*done)(status, error != nullptr ? error : "");
    } catch (...) {
        // Nowhere to report it on a library thread; never unwind into C.
    }
}

/// True on a thread while it runs the log callback.
inline bool &in_log_callback() {
    thread_local bool inside = false;
    return inside;
}

inline void log_trampoline(void *user_data, academy_log_level level, const char *target, const char *message) {
    in_log_callback() = true;
    try {
        (*static_cast<LogCallback *>(user_data))(level, target, message);
    } catch (...) {
        // Never unwind into the library's thread.
    }
    in_log_callback() = false;
}

/// The callback set last with set_log_callback (the library holds a raw
/// pointer to it until replaced).
struct LogSlot {
    std::mutex mutex;
    std::unique_ptr<LogCallback> callback;
};
inline LogSlot &log_slot() {
    // Never destroyed: library threads may still log during exit.
    static LogSlot *slot = new LogSlot;
    return *slot;
}
}  // namespace detail

/// Routes the library's log lines at `level` or more severe to `callback`
/// (academy_set_log_callback), replacing the one set before. The callback
/// runs on LIBRARY THREADS (runtime threads, the embedded exchange's,
/// serving threads) and the caller's, several at once: make it thread-safe
/// and quick, and call no blocking libacademy function from it. An empty
/// callback or ACADEMY_LOG_OFF stops it. From inside the callback it
/// throws INVALID_ARGUMENT.
inline void set_log_callback(LogCallback callback, academy_log_level level = ACADEMY_LOG_INFO) {
    // The library refuses this from inside the callback; refuse it before
    // taking the lock, which a thread replacing the callback may hold
    // while the library waits for this callback to return.
    if (detail::in_log_callback()) {
        throw Error(ACADEMY_ERR_INVALID_ARGUMENT, "set_log_callback called from inside the log callback");
    }
    detail::LogSlot &slot = detail::log_slot();
    std::lock_guard<std::mutex> lock(slot.mutex);
    std::unique_ptr<LogCallback> next;
    if (callback && level != ACADEMY_LOG_OFF) next = std::make_unique<LogCallback>(std::move(callback));
    check(academy_set_log_callback(next ? detail::log_trampoline : nullptr, next.get(), static_cast<int>(level)));
    // The library no longer calls the previous one: it may go now.
    slot.callback = std::move(next);
}

/// Stops routing log lines to a callback.
inline void clear_log_callback() { set_log_callback(nullptr, ACADEMY_LOG_OFF); }

/// Message helpers (no network): JSON in, JSON out.
/// A message from `src_json` to `dest_json` with `body_json`
/// (academy_message_new).
inline std::string message_new(const std::string &src_json, const std::string &dest_json,
                               const std::string &body_json) {
    char *out = nullptr;
    check(academy_message_new(src_json.c_str(), dest_json.c_str(), body_json.c_str(), &out));
    return take(out);
}

/// The response to `request_json` with `body_json` (academy_message_response).
inline std::string message_response(const std::string &request_json, const std::string &body_json) {
    char *out = nullptr;
    check(academy_message_response(request_json.c_str(), body_json.c_str(), &out));
    return take(out);
}

/// The body of an action request, as a Python Handle sends it
/// (academy_action_request_body).
inline std::string action_request_body(const std::string &action, const std::string &args_json = "[]",
                                       const std::string &kwargs_json = "{}") {
    char *out = nullptr;
    check(academy_action_request_body(action.c_str(), args_json.c_str(), kwargs_json.c_str(), &out));
    return take(out);
}

/// The same with the arguments written in `serialization`: "auto" (JSON
/// unless they hold a py/ form, then pickle), "json" or "pickle"
/// (academy_action_request_body_as); send it with Client::request.
inline std::string action_request_body_as(const std::string &action, const std::string &args_json,
                                          const std::string &kwargs_json, const std::string &serialization) {
    char *out = nullptr;
    check(academy_action_request_body_as(action.c_str(), args_json.c_str(), kwargs_json.c_str(),
                                         serialization.c_str(), &out));
    return take(out);
}

/// The result JSON of a response message ("null" for a success response);
/// throws REMOTE for an error response (academy_message_result).
inline std::string message_result(const std::string &response_json) {
    char *out = nullptr;
    check(academy_message_result(response_json.c_str(), &out));
    return take(out);
}

/// A new user id with an optional name, as JSON (academy_user_id_new).
inline std::string user_id_new(const char *name = nullptr) {
    char *out = nullptr;
    check(academy_user_id_new(name, &out));
    return take(out);
}

/// A new, unregistered agent id with an optional name, as JSON
/// (academy_agent_id_new).
inline std::string agent_id_new(const char *name = nullptr) {
    char *out = nullptr;
    check(academy_agent_id_new(name, &out));
    return take(out);
}

/// Python values: a Python value that JSON has no form for reaches
/// handlers, and leaves them, in the library's JSON forms (the README's
/// "Python values" section), e.g. {"py/ndarray": {"dtype": "<f8",
/// "shape": [2, 3], "order": "C", "data": "<base64>"}} and
/// {"py/bytes": "<base64>"}. These read and write them as typed buffers.

/// The value at `pointer` (an RFC 6901 JSON pointer: "" the whole, "/0"
/// the first item of an array, "/a/b" key b of key a) in `json`, as JSON
/// text (academy_json_get); throws INVALID_ARGUMENT if there is none.
inline std::string json_get(const std::string &json, const std::string &pointer) {
    char *out = nullptr;
    check(academy_json_get(json.c_str(), pointer.c_str(), &out));
    return take(out);
}

namespace detail {
template <typename T>
struct is_complex : std::false_type {};
template <typename T>
struct is_complex<std::complex<T>> : std::true_type {};
template <typename T>
inline constexpr bool is_element = std::is_same_v<T, bool> || is_complex<T>::value ||
                                   std::is_floating_point_v<T> || std::is_integral_v<T>;
}  // namespace detail

/// numpy's kind of the element type T: 'b' (bool), 'i' (signed integers),
/// 'u' (unsigned integers), 'f' (float, double), 'c' (std::complex<float>,
/// std::complex<double>).
template <typename T>
constexpr char dtype_kind() {
    static_assert(detail::is_element<T>, "an array's elements are bool, integers, floats or std::complex");
    if constexpr (std::is_same_v<T, bool>) {
        return 'b';
    } else if constexpr (detail::is_complex<T>::value) {
        return 'c';
    } else if constexpr (std::is_floating_point_v<T>) {
        return 'f';
    } else {
        return std::is_signed_v<T> ? 'i' : 'u';
    }
}

/// numpy's dtype of T in the machine's byte order, as academy_ndarray_write
/// takes it: "=f8" for double, "|b1" for bool, "=c16" for std::complex<double>.
template <typename T>
std::string dtype_of() {
    static_assert(sizeof(bool) == 1, "numpy's bool is one byte");
    return std::string(sizeof(T) == 1 ? "|" : "=") + dtype_kind<T>() + std::to_string(sizeof(T));
}

/// The JSON form of an array of `shape` (numpy's; empty for a 0-d array)
/// whose elements are at `data` of type `dtype` (numpy's dtype.str),
/// laid out in `order` ('C': row-major, the last index fastest; 'F':
/// column-major) (academy_ndarray_write). The elements are copied; `data`
/// must hold product(shape) of them.
inline std::string ndarray_write(const std::string &dtype, const std::vector<std::size_t> &shape, char order,
                                 const void *data) {
    char *out = nullptr;
    static const unsigned char none = 0;  // any valid pointer for no elements
    check(academy_ndarray_write(dtype.c_str(), shape.size(), shape.empty() ? nullptr : shape.data(), order,
                                data != nullptr ? data : &none, &out));
    return take(out);
}

/// The JSON form of `values` as an array of `shape` (default: one
/// dimension of values.size()) laid out in `order`; throws
/// INVALID_ARGUMENT if shape does not hold values.size() elements.
template <typename T>
std::string ndarray_write(const T *values, std::size_t count, std::vector<std::size_t> shape = {}, char order = 'C') {
    if (shape.empty()) shape.push_back(count);
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    if (n != count) {
        throw Error(ACADEMY_ERR_INVALID_ARGUMENT,
                    "the shape holds " + std::to_string(n) + " elements, not " + std::to_string(count));
    }
    return ndarray_write(dtype_of<T>(), shape, order, values);
}

template <typename T>
std::string ndarray_write(const std::vector<T> &values, std::vector<std::size_t> shape = {}, char order = 'C') {
    return ndarray_write(values.data(), values.size(), std::move(shape), order);
}

/// std::vector<bool> keeps bits, not bools: copied into bytes first.
inline std::string ndarray_write(const std::vector<bool> &values, std::vector<std::size_t> shape = {},
                                 char order = 'C') {
    std::unique_ptr<bool[]> bools(new bool[values.size() + 1]);
    for (std::size_t i = 0; i < values.size(); i++) bools[i] = values[i];
    return ndarray_write(bools.get(), values.size(), std::move(shape), order);
}

#if __cplusplus >= 202002L
template <typename T, std::size_t Extent>
std::string ndarray_write(std::span<T, Extent> values, std::vector<std::size_t> shape = {}, char order = 'C') {
    return ndarray_write<std::remove_const_t<T>>(values.data(), values.size(), std::move(shape), order);
}
#endif

/// A numpy array read from JSON (academy_ndarray_read): owns the
/// library's read-only academy_ndarray (freed with it). Its elements are
/// in the machine's byte order, laid out in order(); read them as the C++
/// type of the dtype (data<double>() for "<f8"), which is checked.
class NDArray {
public:
    /// Reads the {"py/ndarray": ...} form at `pointer` ("" for the whole)
    /// of `json`; throws INVALID_ARGUMENT for any other value, or a dtype
    /// that is not bool, integer, float or complex.
    explicit NDArray(const std::string &json, const std::string &pointer = "") {
        academy_ndarray *a = nullptr;
        check(academy_ndarray_read(json.c_str(), pointer.c_str(), &a));
        a_ = Owner<academy_ndarray, academy_ndarray_free>(a);
    }
    const academy_ndarray *get() const noexcept { return a_.get(); }
    const academy_ndarray *operator->() const noexcept { return a_.get(); }
    /// numpy's dtype.str in the machine's byte order, e.g. "<f8".
    std::string dtype() const { return get()->dtype; }
    /// numpy's shape (empty for a 0-d array).
    std::vector<std::size_t> shape() const { return {get()->shape, get()->shape + get()->ndim}; }
    /// 'C' (row-major) or 'F' (column-major).
    char order() const noexcept { return get()->order; }
    /// The number of elements.
    std::size_t size() const noexcept { return get()->nbytes / get()->itemsize; }
    /// Whether the elements are of type T.
    template <typename T>
    bool holds() const noexcept {
        return get()->kind == dtype_kind<T>() && get()->itemsize == sizeof(T);
    }
    /// The elements as T (size() of them, in order()); throws
    /// INVALID_ARGUMENT unless holds<T>(), or, for bool, if a byte is
    /// neither 0 nor 1. Valid while this NDArray lives.
    template <typename T>
    const T *data() const {
        if (!holds<T>()) {
            throw Error(ACADEMY_ERR_INVALID_ARGUMENT, "the array's dtype is " + dtype() + ", not " + dtype_of<T>());
        }
        if constexpr (std::is_same_v<T, bool>) {
            const auto *bytes = static_cast<const unsigned char *>(get()->data);
            for (std::size_t i = 0; i < size(); i++) {
                if (bytes[i] > 1) throw Error(ACADEMY_ERR_INVALID_ARGUMENT, "a bool array holds a byte that is not 0 or 1");
            }
        }
        return static_cast<const T *>(get()->data);
    }
    /// A copy of the elements (as data<T>()).
    template <typename T>
    std::vector<T> to_vector() const {
        const T *p = data<T>();
        return std::vector<T>(p, p + size());
    }
#if __cplusplus >= 202002L
    /// The elements as a std::span (as data<T>()).
    template <typename T>
    std::span<const T> values() const {
        return {data<T>(), size()};
    }
#endif
    /// The position in data() of numpy's element a[i, j, ...] (indices
    /// from 0), following order(): i*cols + j for a row-major (rows, cols)
    /// array, i + j*rows for a column-major one. Throws INVALID_ARGUMENT
    /// for the wrong number of indices or one out of range.
    std::size_t index(std::initializer_list<std::size_t> at) const {
        const std::size_t ndim = get()->ndim;
        if (at.size() != ndim) throw Error(ACADEMY_ERR_INVALID_ARGUMENT, "the number of indices is not ndim");
        std::size_t position = 0, stride = 1;
        for (std::size_t k = 0; k < ndim; k++) {
            const std::size_t d = order() == 'F' ? k : ndim - 1 - k;  // the fastest index first
            const std::size_t i = at.begin()[d];
            if (i >= get()->shape[d]) throw Error(ACADEMY_ERR_INVALID_ARGUMENT, "an index is out of the shape");
            position += i * stride;
            stride *= get()->shape[d];
        }
        return position;
    }

private:
    Owner<academy_ndarray, academy_ndarray_free> a_;
};

/// The bytes of a {"py/bytes": ...} or {"py/bytearray": ...} form at
/// `pointer` ("" for the whole) of `json` (academy_bytes_read).
inline std::vector<std::uint8_t> bytes_read(const std::string &json, const std::string &pointer = "") {
    std::uint8_t *data = nullptr;
    std::size_t len = 0;
    check(academy_bytes_read(json.c_str(), pointer.c_str(), &data, &len));
    std::vector<std::uint8_t> out(data, data + len);
    academy_bytes_free(data, len);
    return out;
}

/// {"py/bytes": ...} of `len` bytes at `data` (academy_bytes_write).
inline std::string bytes_write(const void *data, std::size_t len) {
    char *out = nullptr;
    static const unsigned char none = 0;  // any valid pointer for no bytes
    check(academy_bytes_write(len > 0 ? data : &none, len, &out));
    return take(out);
}
inline std::string bytes_write(std::string_view bytes) { return bytes_write(bytes.data(), bytes.size()); }
inline std::string bytes_write(const std::vector<std::uint8_t> &bytes) { return bytes_write(bytes.data(), bytes.size()); }

/// A completion queue (academy_queue_new): _async calls, listens and
/// serve_queue post events here; watch fd() in your event loop, or block in
/// poll(). Shareable between clients and threads.
class Queue {
public:
    Queue() {
        academy_queue *q = nullptr;
        check(academy_queue_new(&q));
        h_ = Owner<academy_queue, academy_queue_free>(q);
    }
    academy_queue *get() const noexcept { return h_.get(); }
    /// Readable while events wait; owned by the queue (never close it).
    int fd() const {
        int fd = -1;
        check(academy_queue_fd(get(), &fd));
        return fd;
    }
    /// The next event, waiting up to `timeout` (0: not at all,
    /// Timeout::forever(): no limit); empty when none came in time. Any
    /// number of threads may poll one queue.
    std::optional<Event> poll(Timeout timeout = 0.0) {
        academy_event *e = nullptr;
        academy_status status = academy_queue_poll(get(), timeout.seconds(), &e);
        if (status == ACADEMY_ERR_TIMEOUT) return std::nullopt;
        check(status);
        return Event(e);
    }

private:
    Owner<academy_queue, academy_queue_free> h_;
};

/// A client bound to one mailbox (academy_user_client_new,
/// academy_agent_client_new): closed and freed with its owner. Thread-safe.
/// Ids are JSON strings, as mailbox_id() returns them.
class Client {
public:
    /// Takes ownership of `p` (academy_client_free frees it).
    explicit Client(academy_client *p) : h_(p) {}
    academy_client *get() const noexcept { return h_.get(); }

    std::string mailbox_id() const {
        char *out = nullptr;
        check(academy_client_mailbox_id(get(), &out));
        return take(out);
    }
    /// Registers a new agent mailbox; returns its registration JSON (for
    /// Factory::agent).
    std::string register_agent(const std::string &types, const char *name = nullptr) {
        char *out = nullptr;
        check(academy_client_register_agent(get(), types.c_str(), name, &out));
        return take(out);
    }
    void send(const std::string &message) { check(academy_client_send(get(), message.c_str())); }
    /// Starts sending `message` and returns without waiting for the
    /// exchange (academy_client_send_async). `done` (may be empty) is
    /// called once with the outcome ON A LIBRARY THREAD: keep it short,
    /// thread-safe, and make no blocking libacademy call from it. Throws
    /// (and never calls `done`) if the send was not started.
    void send_async(const std::string &message, SendDone done = nullptr) {
        if (!done) {
            check(academy_client_send_async(get(), message.c_str(), nullptr, nullptr));
            return;
        }
        auto owned = std::make_unique<SendDone>(std::move(done));
        check(academy_client_send_async(get(), message.c_str(), detail::send_done_trampoline, owned.get()));
        owned.release();  // the trampoline frees it after the one call
    }
    /// Waits for the send_async sends started before it; throws the first
    /// failure since the last flush, or TIMEOUT (academy_client_flush).
    void flush(Timeout timeout = Timeout::forever()) { check(academy_client_flush(get(), timeout.seconds())); }
    std::string recv(Timeout timeout) {
        char *out = nullptr;
        check(academy_client_recv(get(), timeout.seconds(), &out));
        return take(out);
    }
    /// The status of the mailbox `id_json` (academy_client_status).
    academy_mailbox_status status(const std::string &id_json) {
        academy_mailbox_status out = ACADEMY_MAILBOX_MISSING;
        check(academy_client_status(get(), id_json.c_str(), &out));
        return out;
    }
    /// Terminates the mailbox `id_json` (academy_client_terminate).
    void terminate(const std::string &id_json) { check(academy_client_terminate(get(), id_json.c_str())); }
    /// The agents of class `agent_type` (or a subclass), as a JSON array of
    /// ids (academy_client_discover).
    std::string discover(const std::string &agent_type, bool allow_subclasses = true) {
        char *out = nullptr;
        check(academy_client_discover(get(), agent_type.c_str(), allow_subclasses, &out));
        return take(out);
    }
    /// Sends a heartbeat for this client's mailbox now.
    void heartbeat() { check(academy_client_heartbeat(get())); }
    /// The age of the last heartbeat of `id_json`; empty if it never sent
    /// one (academy_client_heartbeat_status).
    std::optional<std::chrono::duration<double>> heartbeat_status(const std::string &id_json) {
        double age = 0;
        check(academy_client_heartbeat_status(get(), id_json.c_str(), &age));
        if (std::isnan(age)) return std::nullopt;
        return std::chrono::duration<double>(age);
    }
    /// The exchange's counters for the agent `id_json`, as a JSON object
    /// (academy_client_agent_stats).
    std::string agent_stats(const std::string &id_json) {
        char *out = nullptr;
        check(academy_client_agent_stats(get(), id_json.c_str(), &out));
        return take(out);
    }
    /// Shares the mailbox `id_json` with `group` (exchanges with
    /// authentication; FORBIDDEN unless the owner belongs to it).
    void share_mailbox(const std::string &id_json, const std::string &group) {
        check(academy_client_share_mailbox(get(), id_json.c_str(), group.c_str()));
    }
    /// The groups `id_json` is shared with, as a JSON array of strings.
    std::string shared_groups(const std::string &id_json) {
        char *out = nullptr;
        check(academy_client_shared_groups(get(), id_json.c_str(), &out));
        return take(out);
    }
    void unshare_mailbox(const std::string &id_json, const std::string &group) {
        check(academy_client_unshare_mailbox(get(), id_json.c_str(), group.c_str()));
    }
    /// Sends the request `body_json` to `dest_json` and returns the whole
    /// response message (academy_client_request; see message_result).
    std::string request(const std::string &dest_json, const std::string &body_json,
                        Timeout timeout = Timeout::forever()) {
        char *out = nullptr;
        check(academy_client_request(get(), dest_json.c_str(), body_json.c_str(), timeout.seconds(), &out));
        return take(out);
    }
    std::string action(const std::string &agent_id, const std::string &action, const std::string &args = "[]",
                       const std::string &kwargs = "{}", Timeout timeout = Timeout::forever()) {
        char *out = nullptr;
        check(academy_client_action(get(), agent_id.c_str(), action.c_str(), args.c_str(), kwargs.c_str(),
                                    timeout.seconds(), &out));
        return take(out);
    }
    /// The round trip in seconds.
    double ping(const std::string &agent_id, Timeout timeout = Timeout::forever()) {
        double rtt = 0;
        check(academy_client_ping(get(), agent_id.c_str(), timeout.seconds(), &rtt));
        return rtt;
    }
    void shutdown_agent(const std::string &agent_id, int terminate = -1) {
        check(academy_client_shutdown_agent(get(), agent_id.c_str(), terminate));
    }
    /// Starts an action and returns at once; one CALL event with `token`
    /// comes to `queue` when it ends (see academy_client_action_async).
    void action_async(const std::string &agent_id, const std::string &action, const std::string &args,
                      const std::string &kwargs, Timeout timeout, Queue &queue, std::uint64_t token) {
        check(academy_client_action_async(get(), agent_id.c_str(), action.c_str(), args.c_str(), kwargs.c_str(),
                                          timeout.seconds(), queue.get(), token));
    }
    /// Starts request(); its CALL event carries the response message.
    void request_async(const std::string &dest, const std::string &body, Timeout timeout, Queue &queue,
                       std::uint64_t token) {
        check(academy_client_request_async(get(), dest.c_str(), body.c_str(), timeout.seconds(), queue.get(), token));
    }
    /// Starts ping(); its CALL event carries the round trip (Event::rtt).
    void ping_async(const std::string &agent_id, Timeout timeout, Queue &queue, std::uint64_t token) {
        check(academy_client_ping_async(get(), agent_id.c_str(), timeout.seconds(), queue.get(), token));
    }
    /// Messages that no call waits for go to `queue` (academy_client_listen).
    void listen(Queue &queue, std::uint64_t token) { check(academy_client_listen(get(), queue.get(), token)); }
    /// Serves from the program's loop: REQUEST events on `queue`
    /// (academy_agent_serve_queue); returns at once.
    void serve_queue(Queue &queue, std::uint64_t token) {
        check(academy_agent_serve_queue(get(), queue.get(), token));
    }
    /// Blocks serving action requests (see academy_agent_serve).
    void serve(academy_action_fn handler, void *user_data = nullptr) {
        check(academy_agent_serve(get(), handler, user_data));
    }
    /// Blocks serving action requests with `handler`. The handler runs on
    /// LIBRARY THREADS (up to the factory's max_concurrency at once), so it
    /// must be thread-safe; it may call libacademy. An exception it throws
    /// before completing the reply becomes the caller's error (reply_error
    /// with its what()); complete the reply last.
    void serve(const ActionHandler &handler) {
        check(academy_agent_serve(get(), detail::action_trampoline,
                                  const_cast<void *>(static_cast<const void *>(&handler))));
    }
    void stop() { check(academy_agent_stop(get())); }
    void close() { check(academy_client_close(get())); }

private:
    Owner<academy_client, academy_client_free> h_;
};

class Factory {
public:
    explicit Factory(const std::string &url, const char *options_json = nullptr) {
        academy_factory *p = nullptr;
        check(academy_http_factory_new(url.c_str(), options_json, &p));
        h_ = Owner<academy_factory, academy_factory_free>(p);
    }
    /// academy-py's Redis exchange (academy_redis_factory_new).
    static Factory redis(const char *options_json = nullptr) {
        academy_factory *p = nullptr;
        check(academy_redis_factory_new(options_json, &p));
        return Factory(p);
    }
    /// academy-py's hybrid exchange (academy_hybrid_factory_new).
    static Factory hybrid(const char *options_json = nullptr) {
        academy_factory *p = nullptr;
        check(academy_hybrid_factory_new(options_json, &p));
        return Factory(p);
    }
    Client user(const char *name = nullptr) const {
        academy_client *c = nullptr;
        check(academy_user_client_new(h_.get(), name, &c));
        return Client(c);
    }
    Client agent(const std::string &registration_json) const {
        academy_client *c = nullptr;
        check(academy_agent_client_new(h_.get(), registration_json.c_str(), &c));
        return Client(c);
    }

private:
    explicit Factory(academy_factory *p) : h_(p) {}
    Owner<academy_factory, academy_factory_free> h_;
};

/// The embedded exchange server, stopped and freed with its owner.
class Exchange {
public:
    explicit Exchange(const char *options_json = nullptr) {
        academy_exchange *p = nullptr;
        check(academy_exchange_spawn(options_json, &p));
        h_ = Owner<academy_exchange, academy_exchange_free>(p);
    }
    std::string url() const {
        char *out = nullptr;
        check(academy_exchange_url(h_.get(), &out));
        return take(out);
    }
    /// Stops the server before its owner goes (academy_exchange_stop);
    /// twice is a no-op.
    void stop() { check(academy_exchange_stop(h_.get())); }

private:
    Owner<academy_exchange, academy_exchange_free> h_;
};

}  // namespace academy

#endif
