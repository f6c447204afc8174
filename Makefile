# libacademy: `make run` builds the library and runs the main job (a C user
# calling a C agent over the embedded exchange); `make test` runs every test.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -O2 -g -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror
RELEASE := $(CURDIR)/target/release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
PREFIX ?= /usr/local
# What a static link needs besides libacademy.a (rustc --print native-static-libs).
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
BUILD := examples-c/build
EXAMPLES := demo calculator_agent call_agent fork_children event_loop

.PHONY: all lib examples run test clean install install-files

all: examples

lib:
	$(CARGO) build --release
	@ln -sf libacademy.so $(RELEASE)/libacademy.so.$(MAJOR)

examples: lib $(EXAMPLES:%=$(BUILD)/%)

$(BUILD)/%: examples-c/%.c examples-c/common.h include/academy.h $(RELEASE)/libacademy.so
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Iinclude $< -L$(RELEASE) -lacademy -lpthread -Wl,-rpath,$(RELEASE) -o $@

# The main job. Pass URL=http://host:port to use another exchange.
run: examples
	./scripts/main-job.sh $(URL)

test:
	./scripts/test.sh

# Installs like a C library: make install PREFIX=/opt/academy
install: lib install-files

# The copying part of install, for a library built already.
install-files:
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(RELEASE)/libacademy.so $(DESTDIR)$(PREFIX)/lib/libacademy.so.$(VERSION)
	ln -sf libacademy.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libacademy.so.$(MAJOR)
	ln -sf libacademy.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libacademy.so
	install -m 644 $(RELEASE)/libacademy.a $(DESTDIR)$(PREFIX)/lib/libacademy.a
	install -m 644 include/academy.h include/academy.hpp $(DESTDIR)$(PREFIX)/include/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: academy' 'Description: libacademy, the Academy agent framework for C' 'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lacademy' 'Libs.private: $(STATIC_LIBS)' 'Cflags: -I$${includedir}' \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/academy.pc

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
