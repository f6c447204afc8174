// academy.hpp: header-only C++ owners for libacademy (C++17).
//
// RAII types own factories, clients, exchanges and returned strings; a
// failed call throws academy::Error carrying the status and
// academy_last_error(). Written by hand on top of academy.h.
#ifndef ACADEMY_HPP
#define ACADEMY_HPP

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
