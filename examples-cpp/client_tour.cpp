// A tour of academy.hpp beyond calling an action: the log callback, the
// status names, message helpers, status / heartbeat / discover / stats /
// terminate, send_async + flush, sharing a mailbox, a std::function
// handler that replies with errors, and an agent served from a completion
// queue, all against an exchange embedded in this process (with token
// authentication, so that mailboxes can be shared with a group).
//
// Each line it prints is checked by tests/packaging.rs.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <academy.hpp>

using namespace std::chrono_literals;

static bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

// The "uid" value of an id's JSON ({"uid": "...", ...}).
static std::string uid_of(const std::string &id_json) {
    const std::string key = "\"uid\":";
    std::size_t start = id_json.find('"', id_json.find(key) + key.size()) + 1;
    return id_json.substr(start, id_json.find('"', start) - start);
}

int main() {
    try {
        std::cout << "version " << (academy::version() == academy_version() ? "matches" : "differs") << "\n";
        std::cout << "status name " << academy::status_name(ACADEMY_ERR_TIMEOUT) << "\n";

        // Log lines arrive on library threads: count them with an atomic.
        std::atomic<int> log_lines{0};
        academy::set_log_callback(
            [&log_lines](academy_log_level, const std::string &, const std::string &) { log_lines++; },
            ACADEMY_LOG_DEBUG);

        academy::Exchange exchange(
            R"({"auth": {"method": "token", "kwargs": {"tokens": {"cpp-token": {"client_id": "cpp", "groups": ["team"]}}}}})");
        academy::Factory factory(exchange.url(), R"({"additional_headers": {"Authorization": "Bearer cpp-token"}})");
        academy::Client user = factory.user("cpp-user");
        std::string me = user.mailbox_id();

        // An agent served by a lambda; unknown actions get reply_error.
        academy::Client agent = factory.agent(user.register_agent("examples.Adder,examples.Base", "adder"));
        std::string adder = agent.mailbox_id();
        std::atomic<int> served{0};
        academy::ActionHandler handler = [&served](const std::string &action, const std::string &args,
                                                   const std::string &, academy_reply *reply) {
            served++;
            // A long handler would ask now and then whether to stop early.
            if (academy::reply_cancelled(reply)) {
                std::cerr << "the call was cancelled before it started\n";
            }
            double a = 0, b = 0;
            if (action == "add" && std::sscanf(args.c_str(), " [ %lf , %lf ]", &a, &b) == 2) {
                academy::reply_ok(reply, std::to_string(a + b));
            } else {
                academy::reply_error(reply, "no action " + action);
            }
        };
        std::thread serving([&agent, &handler] {
            try {
                agent.serve(handler);
            } catch (const academy::Error &e) {
                std::cerr << "serving: " << e.what() << "\n";
            }
        });
        std::cout << "add " << std::stod(user.action(adder, "add", "[2, 3]", "{}", 10s)) << "\n";
        try {
            user.action(adder, "divide", "[1, 0]", "{}", 10s);
        } catch (const academy::Error &e) {
            std::cout << "divide " << academy::status_name(e.status()) << " "
                      << (contains(e.what(), "no action divide") ? "with the handler's text" : e.what()) << "\n";
        }

        // The same call built by hand with the message helpers.
        std::string response = user.request(adder, academy::action_request_body("add", "[40, 2]"), 10s);
        std::cout << "request add " << std::stod(academy::message_result(response)) << "\n";
        std::string local = academy::message_new(academy::user_id_new("someone"), academy::agent_id_new("nobody"),
                                                 R"({"kind": "ping-request"})");
        std::string answer = academy::message_response(local, R"({"kind": "success-response"})");
        std::cout << "local response result " << academy::message_result(answer) << "\n";

        // What the exchange knows about the agent.
        std::cout << "status active " << (user.status(adder) == ACADEMY_MAILBOX_ACTIVE) << "\n";
        agent.heartbeat();
        std::optional<std::chrono::duration<double>> age = user.heartbeat_status(adder);
        std::cout << "heartbeat age known " << (age && age->count() >= 0 && age->count() < 60) << "\n";
        std::cout << "discover finds it " << contains(user.discover("examples.Base", true), uid_of(adder))
                  << ", not as exact class " << contains(user.discover("examples.Base", false), uid_of(adder))
                  << "\n";
        std::string stats = user.agent_stats(adder);
        std::cout << "stats " << (contains(stats, "\"completed\"") ? "have completed" : stats) << "\n";

        // 50 messages sent in the background to a second user, then flushed.
        academy::Client other = factory.user("cpp-other");
        std::string them = other.mailbox_id();
        std::atomic<int> accepted{0};
        for (int i = 0; i < 50; i++) {
            user.send_async(academy::message_new(me, them, R"({"kind": "success-response"})"),
                            [&accepted](academy_status status, const std::string &) {
                                // On a library thread.
                                if (status == ACADEMY_OK) accepted++;
                            });
        }
        user.flush(10s);
        int received = 0;
        for (int i = 0; i < 50; i++) {
            if (contains(other.recv(10s), "success-response")) received++;
        }
        std::cout << "send_async " << accepted.load() << " accepted, " << received << " received\n";

        // Sharing: the owner belongs to "team", not to "strangers".
        user.share_mailbox(me, "team");
        std::cout << "shared with " << user.shared_groups(me) << "\n";
        user.unshare_mailbox(me, "team");
        std::cout << "after unshare " << user.shared_groups(me) << "\n";
        try {
            user.share_mailbox(me, "strangers");
        } catch (const academy::Error &e) {
            std::cout << "share with strangers " << academy::status_name(e.status()) << "\n";
        }

        // An agent served from a completion queue, answered on this thread.
        academy::Client spare = factory.agent(user.register_agent("examples.Spare"));
        std::string spare_id = spare.mailbox_id();
        academy::Queue queue;
        spare.serve_queue(queue, 7);
        user.action_async(spare_id, "twice", "[21]", "{}", 10s, queue, 1);
        user.ping_async(spare_id, 10s, queue, 2);
        int answered = 0;
        bool pinged = false;
        std::string twice;
        while (twice.empty() || !pinged) {
            std::optional<academy::Event> event = queue.poll(10s);
            if (!event) throw academy::Error(ACADEMY_ERR_TIMEOUT, "no event from the queue");
            if (event->kind() == ACADEMY_EVENT_REQUEST) {
                academy::reply_ok(event->reply(), std::to_string(2 * std::stoi(event->args_json().substr(1))));
                answered++;
            } else if (event->kind() == ACADEMY_EVENT_CALL && event->token() == 1) {
                event->check();
                twice = event->json();
            } else if (event->kind() == ACADEMY_EVENT_CALL && event->token() == 2) {
                event->check();
                pinged = event->rtt() > 0s;
            }
        }
        std::cout << "queue twice " << twice << ", " << answered << " request answered, ping " << pinged << "\n";

        // Terminate the spare agent's mailbox: its serving ends.
        user.terminate(spare_id);
        std::cout << "terminated " << (user.status(spare_id) == ACADEMY_MAILBOX_TERMINATED) << "\n";
        for (;;) {
            std::optional<academy::Event> event = queue.poll(10s);
            if (!event) throw academy::Error(ACADEMY_ERR_TIMEOUT, "the serving did not end");
            if (event->kind() == ACADEMY_EVENT_ENDED) {
                std::cout << "serving ended " << academy::status_name(event->status()) << "\n";
                break;
            }
        }

        user.shutdown_agent(adder, 1);
        serving.join();
        std::cout << "handler served " << served.load() << "\n";
        other.close();
        user.close();
        exchange.stop();
        academy::clear_log_callback();
        std::cout << "log lines seen " << (log_lines.load() > 0) << "\n";
    } catch (const academy::Error &e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    return 0;
}
