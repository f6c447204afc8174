# libacademy: `make run` builds the library and runs the main job (a C user
# calling a C agent over the embedded exchange); `make test` runs every test.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -O2 -g -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror
RELEASE := $(CURDIR)/target/release
BUILD := examples-c/build
EXAMPLES := demo calculator_agent call_agent fork_children

.PHONY: all lib examples run test clean

all: examples

lib:
	$(CARGO) build --release

examples: lib $(EXAMPLES:%=$(BUILD)/%)

$(BUILD)/%: examples-c/%.c examples-c/common.h include/academy.h $(RELEASE)/libacademy.so
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Iinclude $< -L$(RELEASE) -lacademy -lpthread -Wl,-rpath,$(RELEASE) -o $@

# The main job. Pass URL=http://host:port to use another exchange.
run: examples
	$(BUILD)/demo $(URL)

test:
	./scripts/test.sh

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
