// academy.hpp: header-only C++ owners for libacademy (C++17).
//
// RAII types own factories, clients, exchanges and returned strings; a
// failed call throws academy::Error carrying the status and
// academy_last_error(). Written by hand on top of academy.h.
#ifndef ACADEMY_HPP
#define ACADEMY_HPP

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

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
    explicit Event(academy_event *e) : e_(e) {}
    const academy_event *operator->() const noexcept { return e_.get(); }
    const academy_event &operator*() const noexcept { return *e_.get(); }

private:
    Owner<academy_event, academy_event_free> e_;
};

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
    /// The next event, waiting up to timeout_s (0: not at all, < 0: no
    /// limit); empty when none came in time.
    std::optional<Event> poll(double timeout_s = 0) {
        academy_event *e = nullptr;
        academy_status status = academy_queue_poll(get(), timeout_s, &e);
        if (status == ACADEMY_ERR_TIMEOUT) return std::nullopt;
        check(status);
        return Event(e);
    }

private:
    Owner<academy_queue, academy_queue_free> h_;
};

class Client {
public:
    explicit Client(academy_client *p) : h_(p) {}
    academy_client *get() const noexcept { return h_.get(); }

    std::string mailbox_id() const {
        char *out = nullptr;
        check(academy_client_mailbox_id(get(), &out));
        return take(out);
    }
    std::string register_agent(const std::string &types, const char *name = nullptr) {
        char *out = nullptr;
        check(academy_client_register_agent(get(), types.c_str(), name, &out));
        return take(out);
    }
    void send(const std::string &message) { check(academy_client_send(get(), message.c_str())); }
    std::string recv(double timeout_s) {
        char *out = nullptr;
        check(academy_client_recv(get(), timeout_s, &out));
        return take(out);
    }
    std::string action(const std::string &agent_id, const std::string &action, const std::string &args = "[]",
                       const std::string &kwargs = "{}", double timeout_s = -1) {
        char *out = nullptr;
        check(academy_client_action(get(), agent_id.c_str(), action.c_str(), args.c_str(), kwargs.c_str(),
                                    timeout_s, &out));
        return take(out);
    }
    double ping(const std::string &agent_id, double timeout_s = -1) {
        double rtt = 0;
        check(academy_client_ping(get(), agent_id.c_str(), timeout_s, &rtt));
        return rtt;
    }
    void shutdown_agent(const std::string &agent_id, int terminate = -1) {
        check(academy_client_shutdown_agent(get(), agent_id.c_str(), terminate));
    }
    /// Starts an action and returns at once; one CALL event with `token`
    /// comes to `queue` when it ends (see academy_client_action_async).
    void action_async(const std::string &agent_id, const std::string &action, const std::string &args,
                      const std::string &kwargs, double timeout_s, Queue &queue, std::uint64_t token) {
        check(academy_client_action_async(get(), agent_id.c_str(), action.c_str(), args.c_str(), kwargs.c_str(),
                                          timeout_s, queue.get(), token));
    }
    void request_async(const std::string &dest, const std::string &body, double timeout_s, Queue &queue,
                       std::uint64_t token) {
        check(academy_client_request_async(get(), dest.c_str(), body.c_str(), timeout_s, queue.get(), token));
    }
    void ping_async(const std::string &agent_id, double timeout_s, Queue &queue, std::uint64_t token) {
        check(academy_client_ping_async(get(), agent_id.c_str(), timeout_s, queue.get(), token));
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

private:
    Owner<academy_exchange, academy_exchange_free> h_;
};

}  // namespace academy

#endif
