# libacademy: `make run` builds the library and runs the main job (a C user
# calling a C agent over the embedded exchange); `make test` runs every test.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -O2 -g -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror
# make's built-in FC is f77; the Fortran module needs Fortran 2008 or later.
ifeq ($(origin FC),default)
FC := gfortran
endif
# -frecursive: handlers run on library threads, so locals live on the stack.
FFLAGS ?= -O2 -g -std=f2018 -frecursive -Wall -Wextra -Werror
MPICC ?= mpicc
OBJCOPY ?= objcopy
STRIP ?= strip
DOXYGEN ?= doxygen
# Where cargo builds (it honours CARGO_TARGET_DIR; so does this Makefile).
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(abspath $(CARGO_TARGET_DIR)),$(CURDIR)/target)
RELEASE := $(TARGET_DIR)/release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
MINOR := $(word 2,$(subst ., ,$(VERSION)))
# cargo-c's SONAME policy (build.rs sets it): libacademy.so.0.MINOR while
# the major version is 0, libacademy.so.MAJOR from 1.0 on.
SONAME := libacademy.so.$(if $(filter 0,$(MAJOR)),0.$(MINOR),$(MAJOR))
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
# What a static link needs besides libacademy.a (rustc --print native-static-libs).
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
BUILD := examples-c/build
EXAMPLES := demo calculator_agent call_agent fork_children log_callback event_loop array_agent
FBUILD := examples-fortran/build
FORTRAN_EXAMPLES := call_agent calculator_agent queue_calls array_agent values_check
MPIBUILD := examples-mpi/build
DOCDIR ?= $(TARGET_DIR)/doc/c-api
DISTNAME := academy-$(VERSION)
DISTDIR ?= $(TARGET_DIR)/dist

.PHONY: all lib examples fortran mpi run test clean install install-files docs dist

all: examples

# cargo build also leaves target/release/libacademy.so.0.1 (the SONAME's
# file) and academy-uninstalled.pc (for pkg-config) there: see build.rs.
lib:
	$(CARGO) build --release

examples: lib $(EXAMPLES:%=$(BUILD)/%)

$(BUILD)/%: examples-c/%.c examples-c/common.h include/academy.h $(RELEASE)/libacademy.so
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Iinclude $< -L$(RELEASE) -lacademy -lpthread -Wl,-rpath,$(RELEASE) -o $@

# The Fortran module and examples (gfortran). academy_queue.o holds the
# completion queue's wrappers (a submodule): queue_calls links it.
fortran: $(FORTRAN_EXAMPLES:%=$(FBUILD)/%) $(FBUILD)/academy_queue.o

$(FBUILD)/academy.o: fortran/academy.f90
	@mkdir -p $(FBUILD)
	$(FC) $(FFLAGS) -J$(FBUILD) -c $< -o $@

$(FBUILD)/academy_queue.o: fortran/academy_queue.f90 $(FBUILD)/academy.o
	$(FC) $(FFLAGS) -I$(FBUILD) -J$(FBUILD) -c $< -o $@

$(FBUILD)/queue_calls: examples-fortran/queue_calls.f90 $(FBUILD)/academy.o $(FBUILD)/academy_queue.o $(RELEASE)/libacademy.so
	$(FC) $(FFLAGS) -I$(FBUILD) -J$(FBUILD) $< $(FBUILD)/academy.o $(FBUILD)/academy_queue.o -L$(RELEASE) -lacademy -Wl,-rpath,$(RELEASE) -o $@

$(FBUILD)/%: examples-fortran/%.f90 $(FBUILD)/academy.o $(RELEASE)/libacademy.so
	$(FC) $(FFLAGS) -I$(FBUILD) -J$(FBUILD) $< $(FBUILD)/academy.o -L$(RELEASE) -lacademy -Wl,-rpath,$(RELEASE) -o $@

# The MPI example (OpenMPI's or MPICH's mpicc).
mpi: $(MPIBUILD)/steered_sim

$(MPIBUILD)/steered_sim: examples-mpi/steered_sim.c include/academy.h $(RELEASE)/libacademy.so
	@mkdir -p $(MPIBUILD)
	$(MPICC) $(CFLAGS) -Iinclude $< -L$(RELEASE) -lacademy -lpthread -Wl,-rpath,$(RELEASE) -o $@

# The main job. Pass URL=http://host:port to use another exchange.
run: examples
	./scripts/main-job.sh $(URL)

test:
	./scripts/test.sh

# Installs like a C library: make install PREFIX=/opt/academy [LIBDIR=...]
install: lib
	$(MAKE) --no-print-directory install-files

# Installs $(1) as $(2)/$(3) without its debug info, which goes to
# $(2)/.debug/$(3).debug, where gdb finds it through the .gnu_debuglink
# section the stripped file keeps.
define install-stripped
	install -m 755 $(1) $(2)/$(3)
	$(OBJCOPY) --only-keep-debug $(2)/$(3) $(2)/.debug/$(3).debug
	chmod 644 $(2)/.debug/$(3).debug
	$(OBJCOPY) --strip-unneeded --add-gnu-debuglink=$(2)/.debug/$(3).debug $(2)/$(3)
endef

# The copying part of install, for a library built already.
install-files:
	install -d $(DESTDIR)$(LIBDIR)/.debug $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/academy \
	  $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)/.debug
	$(call install-stripped,$(RELEASE)/libacademy.so,$(DESTDIR)$(LIBDIR),libacademy.so.$(VERSION))
	ln -sf libacademy.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libacademy.so
	install -m 644 $(RELEASE)/libacademy.a $(DESTDIR)$(LIBDIR)/libacademy.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libacademy.a
	$(call install-stripped,$(RELEASE)/academy-exchange,$(DESTDIR)$(BINDIR),academy-exchange)
	install -m 644 include/academy.h include/academy.hpp $(DESTDIR)$(INCLUDEDIR)/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: academy' 'Description: libacademy, the Academy agent framework for C' 'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lacademy' 'Libs.private: $(STATIC_LIBS)' 'Cflags: -I$${includedir}' \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/academy.pc
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SONAME@|$(SONAME)|g' \
	  -e 's|@INCLUDEDIR_FROM_HERE@|$(shell realpath -m --relative-to=$(LIBDIR)/cmake/academy $(INCLUDEDIR))|g' \
	  cmake/academyConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/academy/academyConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' \
	  cmake/academyConfigVersion.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/academy/academyConfigVersion.cmake

# The C API's manual (Doxygen) in $(DOCDIR)/html; warnings in $(DOCDIR)/warnings.log.
docs:
	@mkdir -p $(DOCDIR)
	( cat Doxyfile; echo 'PROJECT_NUMBER = $(VERSION)'; echo 'OUTPUT_DIRECTORY = $(DOCDIR)'; \
	  echo 'WARN_LOGFILE = $(DOCDIR)/warnings.log' ) | $(DOXYGEN) -
	@echo "$(DOCDIR)/html/index.html ($$(grep -c 'warning:' $(DOCDIR)/warnings.log) warnings)"

# A release tarball that builds with no network: the files git knows
# (tracked and new, not ignored) plus every crate in vendor/ and a
# .cargo/config.toml that points cargo at it. Reproducible: fixed owner,
# order and times (SOURCE_DATE_EPOCH, by default the last commit's).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
dist:
	rm -rf $(DISTDIR)/$(DISTNAME) $(DISTDIR)/$(DISTNAME).tar.gz
	mkdir -p $(DISTDIR)/$(DISTNAME)/.cargo
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  xargs -0 cp --parents -t $(DISTDIR)/$(DISTNAME)
	cd $(DISTDIR)/$(DISTNAME) && $(CARGO) vendor --locked vendor > .cargo/config.toml 2> vendor.log || \
	  { cat vendor.log; exit 1; }
	rm $(DISTDIR)/$(DISTNAME)/vendor.log
	grep -q 'directory = "vendor"' $(DISTDIR)/$(DISTNAME)/.cargo/config.toml
	tar -C $(DISTDIR) --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) \
	  -cf - $(DISTNAME) | gzip -9n > $(DISTDIR)/$(DISTNAME).tar.gz
	rm -rf $(DISTDIR)/$(DISTNAME)
	@echo "$(DISTDIR)/$(DISTNAME).tar.gz"
	@echo "spack: version(\"$(VERSION)\", sha256=\"$$(sha256sum $(DISTDIR)/$(DISTNAME).tar.gz | cut -d' ' -f1)\")"

clean:
	rm -rf $(BUILD) $(FBUILD) $(MPIBUILD)
	$(CARGO) clean
