# Spack recipe of libacademy. Put it in a Spack package repository of your
# own as packages/academy/package.py (`spack repo create`), then
# `spack install academy`. See the README's "Spack and offline builds".
#
# SPDX-License-Identifier: MIT

import os

from spack_repo.builtin.build_systems.makefile import MakefilePackage

from spack.package import *


class Academy(MakefilePackage):
    """libacademy: a C library, written in Rust, with which C, C++, Fortran
    and Go programs join Academy multi-agent systems (wire-compatible with
    academy-py 1.0), and the academy-exchange server."""

    homepage = "https://github.com/academy-agents/libacademy"
    url = "https://github.com/academy-agents/libacademy/releases/download/v0.1.0/academy-0.1.0.tar.gz"
    git = "https://github.com/academy-agents/libacademy.git"

    license("MIT")

    # Release tarballs are made by `make dist`: they carry every crate in
    # vendor/ and build with no network. `make dist` prints the line to add
    # here for each release, e.g.
    #   version("0.1.0", sha256="...")
    # The git branch fetches its crates from crates.io while it builds.
    version("main", branch="main")

    depends_on("c", type="build")
    # Cargo.toml's rust-version: the crates in Cargo.lock need 1.89.
    depends_on("rust@1.89:", type="build")

    # `make lib` runs cargo build --release; install copies the result.
    build_targets = ["lib"]

    def setup_build_environment(self, env):
        # cargo's downloads and caches stay in the stage, not in ~/.cargo.
        env.set("CARGO_HOME", join_path(self.stage.path, "cargo-home"))
        if os.path.isdir(join_path(self.stage.source_path, "vendor")):
            # A release tarball: its .cargo/config.toml points cargo at vendor/.
            env.set("CARGO_NET_OFFLINE", "true")

    def install(self, spec, prefix):
        # The library (stripped; debug info in lib/.debug), headers,
        # pkg-config and CMake files, and bin/academy-exchange.
        make("install-files", f"PREFIX={prefix}")
