// A C++ user calls a C++-served agent through the embedded exchange, with
// the RAII owners and exceptions of academy.hpp.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <iostream>
#include <thread>

#include <academy.hpp>

static void adder(void *, const char *action, const char *args_json, const char *, academy_reply *reply) {
    double a = 0, b = 0;
    if (std::strcmp(action, "add") == 0 && std::sscanf(args_json, " [ %lf , %lf ]", &a, &b) == 2) {
        academy_reply_ok(reply, std::to_string(a + b).c_str());
    } else {
        academy_reply_error(reply, "unknown action");
    }
}

int main() {
    try {
        academy::Exchange exchange;
        academy::Factory factory(exchange.url());
        academy::Client user = factory.user("cpp-user");
        std::string registration = user.register_agent("examples.Adder");
        academy::Client agent = factory.agent(registration);
        std::thread serving([&agent] { agent.serve(adder); });
        std::string id = agent.mailbox_id();
        std::cout << "add(2, 3) = " << user.action(id, "add", "[2, 3]", "{}", 10) << "\n";
        try {
            user.action(id, "divide", "[1, 0]", "{}", 10);
        } catch (const academy::Error &e) {
            std::cout << "divide failed: " << (e.status() == ACADEMY_ERR_REMOTE ? "remote" : "other") << "\n";
        }
        // 100 actions in flight from this thread through a completion queue.
        academy::Queue queue;
        for (std::uint64_t token = 1; token <= 100; token++) {
            user.action_async(id, "add", "[" + std::to_string(token) + ", 1]", "{}", 10, queue, token);
        }
        int correct = 0;
        for (int i = 0; i < 100; i++) {
            std::optional<academy::Event> event = queue.poll(10);
            if (event && (*event)->kind == ACADEMY_EVENT_CALL && (*event)->status == ACADEMY_OK &&
                std::stod((*event)->json) == double((*event)->token + 1)) {
                correct++;
            }
        }
        std::cout << "100 actions through a queue: " << correct << " correct\n";
        user.shutdown_agent(id, 1);
        serving.join();
        user.close();
    } catch (const academy::Error &e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    return 0;
}
