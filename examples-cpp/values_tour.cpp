// Python values in C++: numpy arrays as typed buffers (academy::NDArray,
// academy::ndarray_write) and bytes (academy::bytes_read, bytes_write),
// first with no network, then through an agent: a C++ user sends a 2x3
// array (the library pickles arguments that hold a py/ form, as academy-py
// would), the C++ agent reads it with numpy's indices and answers its row
// sums as an array, on an exchange embedded in this process.
//
// Each line it prints is checked by tests/packaging.rs, built as C++17
// and as C++20 (which adds the std::span views).
#include <atomic>
#include <complex>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <academy.hpp>

using namespace std::chrono_literals;

// The elements of a 2-d array in numpy's order of indices, whatever its layout.
static std::string rows(const academy::NDArray &a) {
    std::string out;
    const double *x = a.data<double>();
    for (std::size_t i = 0; i < a.shape()[0]; i++) {
        out += i == 0 ? "[" : " [";
        for (std::size_t j = 0; j < a.shape()[1]; j++) {
            out += (j == 0 ? "" : " ") + std::to_string(static_cast<int>(x[a.index({i, j})]));
        }
        out += "]";
    }
    return out;
}

static void arrays() {
    // numpy's np.array([[0, 1, 2], [10, 11, 12]]), laid out both ways.
    academy::NDArray c(academy::ndarray_write(std::vector<double>{0, 1, 2, 10, 11, 12}, {2, 3}));
    academy::NDArray f(academy::ndarray_write(std::vector<double>{0, 10, 1, 11, 2, 12}, {2, 3}, 'F'));
    std::cout << "C " << c.dtype().substr(1) << " " << c.order() << " " << rows(c) << "\n";
    std::cout << "F " << f.dtype().substr(1) << " " << f.order() << " " << rows(f) << "\n";
    try {
        c.data<float>();
    } catch (const academy::Error &e) {
        std::cout << "as float: " << academy::status_name(e.status()) << "\n";
    }
    // The JSON form sits anywhere in a value: read it at a JSON pointer.
    std::string args = "[1, {\"mask\": " + academy::ndarray_write(std::vector<bool>{true, false, true}) + "}]";
    academy::NDArray mask(args, "/1/mask");
    std::vector<bool> bits = mask.to_vector<bool>();
    std::cout << "mask " << mask.dtype() << " " << bits[0] << bits[1] << bits[2] << "\n";
    std::vector<std::complex<double>> z{{1, -2}, {-3, 0.5}};
    academy::NDArray zs(academy::ndarray_write(z));
    std::cout << "complex " << zs.dtype().substr(1) << " " << (zs.to_vector<std::complex<double>>() == z) << "\n";
    std::vector<std::int64_t> big{INT64_MIN, INT64_MAX};
    std::cout << "int64 " << (academy::NDArray(academy::ndarray_write(big)).to_vector<std::int64_t>() == big) << "\n";
#if __cplusplus >= 202002L
    std::span<const double> view = c.values<double>();
    academy::NDArray again(academy::ndarray_write(view.subspan(3), {3}));
    std::cout << "span " << view.size() << " " << view.back() << " " << again.values<double>()[0] << "\n";
#else
    academy::NDArray again(academy::ndarray_write(c.data<double>() + 3, 3));
    std::cout << "span " << c.size() << " " << c.data<double>()[c.size() - 1] << " " << again.data<double>()[0] << "\n";
#endif
    try {
        academy::ndarray_write(std::vector<double>{1, 2, 3}, {2, 2});
    } catch (const academy::Error &e) {
        std::cout << "3 in 2x2: " << academy::status_name(e.status()) << "\n";
    }
}

static void bytes() {
    std::string raw("ab\0\xff", 4);
    std::vector<std::uint8_t> back = academy::bytes_read(academy::bytes_write(raw));
    std::cout << "bytes " << back.size() << " " << static_cast<int>(back[3]) << "\n";
    std::cout << "json_get " << academy::json_get(R"({"a": [1, {"b": "c"}]})", "/a/1/b") << "\n";
}

// The C++ agent's handler: row_sums(a) of a 2-d float64 array.
static void row_sums(const std::string &action, const std::string &args, const std::string &, academy_reply *reply) {
    if (action != "row_sums") {
        academy::reply_error(reply, "no action " + action);
        return;
    }
    academy::NDArray a(args, "/0");  // throws: the caller gets the error
    const double *x = a.data<double>();
    std::vector<double> sums(a.shape()[0]);
    for (std::size_t i = 0; i < sums.size(); i++) {
        for (std::size_t j = 0; j < a.shape()[1]; j++) sums[i] += x[a.index({i, j})];
    }
    academy::reply_ok(reply, academy::ndarray_write(sums));
}

// Serves `agent` on a thread until it is destroyed, also when a call throws.
class Serving {
public:
    Serving(academy::Client &agent, academy::ActionHandler handler) : agent_(agent), handler_(std::move(handler)) {
        thread_ = std::thread([this] {
            try {
                agent_.serve(handler_);
            } catch (const academy::Error &e) {
                std::cerr << "serving: " << e.what() << "\n";
            }
            done_ = true;
        });
    }
    Serving(const Serving &) = delete;
    Serving &operator=(const Serving &) = delete;
    ~Serving() {
        // stop() refuses a client that is not serving yet: try again until
        // serving has started (or ended).
        while (!done_) {
            try {
                agent_.stop();
                break;
            } catch (const academy::Error &) {
                std::this_thread::sleep_for(10ms);
            }
        }
        thread_.join();
    }

private:
    academy::Client &agent_;
    academy::ActionHandler handler_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

static void through_an_agent() {
    academy::Exchange exchange;
    academy::Factory factory(exchange.url());
    academy::Client user = factory.user("cpp-user");
    academy::Client agent = factory.agent(user.register_agent("examples.RowSums", "sums"));
    std::string id = agent.mailbox_id();
    Serving serving(agent, row_sums);
    std::string a = academy::ndarray_write(std::vector<double>{0, 1, 2, 10, 11, 12}, {2, 3});
    academy::NDArray sums(user.action(id, "row_sums", "[" + a + "]", "{}", 10s));
    std::vector<double> s = sums.to_vector<double>();
    std::cout << "row_sums " << sums.shape().size() << " " << s[0] << " " << s[1] << "\n";
    // The same call forced to JSON: the array's form travels as JSON and
    // still reads as an array on the agent's side.
    std::string body = academy::action_request_body_as("row_sums", "[" + a + "]", "{}", "json");
    academy::NDArray again(academy::message_result(user.request(id, body, 10s)));
    std::cout << "as json " << again.to_vector<double>()[1] << "\n";
    try {
        user.action(id, "row_sums", "[" + academy::ndarray_write(std::vector<float>{1, 2}, {1, 2}) + "]", "{}", 10s);
    } catch (const academy::Error &e) {
        std::cout << "float32 " << academy::status_name(e.status()) << "\n";
    }
}

int main() {
    try {
        arrays();
        bytes();
        through_an_agent();
    } catch (const academy::Error &e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    return 0;
}
