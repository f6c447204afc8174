"""Loads packaging/spack/package.py against a stand-in for the part of
Spack's package API it uses (Spack cannot be installed here: it is on
neither PyPI nor Debian 12), runs its build-environment and install
steps, and prints what it declared and did as JSON for tests/dist.rs.

Usage: check_spack_recipe.py PATH/TO/package.py
"""

import importlib.util
import json
import os
import sys
import tempfile
import types

recorded = {'versions': [], 'depends_on': [], 'license': [], 'make': []}


def directive(kind):
    def record(*args, **kwargs):
        recorded[kind].append({'args': list(args), 'kwargs': kwargs})
    return record


class MakefilePackage:
    """Spack's MakefilePackage as far as a recipe sees it: build runs make
    on build_targets, install runs make install."""
    build_targets = []


def make(*args, **kwargs):
    recorded['make'].append(list(args))


package_api = types.ModuleType('spack.package')
package_api.version = directive('versions')
package_api.depends_on = directive('depends_on')
package_api.license = directive('license')
package_api.join_path = os.path.join
package_api.make = make
package_api.__all__ = ['version', 'depends_on', 'license', 'join_path', 'make']
spack = types.ModuleType('spack')
spack.package = package_api
makefile = types.ModuleType('spack_repo.builtin.build_systems.makefile')
makefile.MakefilePackage = MakefilePackage
for name, module in {
    'spack': spack,
    'spack.package': package_api,
    'spack_repo': types.ModuleType('spack_repo'),
    'spack_repo.builtin': types.ModuleType('spack_repo.builtin'),
    'spack_repo.builtin.build_systems': types.ModuleType('spack_repo.builtin.build_systems'),
    'spack_repo.builtin.build_systems.makefile': makefile,
}.items():
    sys.modules[name] = module

spec = importlib.util.spec_from_file_location('academy_recipe', sys.argv[1])
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)
pkg = recipe.Academy()


class Env:
    def __init__(self):
        self.vars = {}

    def set(self, name, value):
        self.vars[name] = value


environments = {}
with tempfile.TemporaryDirectory() as stage:
    for kind, has_vendor in [('git', False), ('tarball', True)]:
        source = os.path.join(stage, kind)
        os.makedirs(os.path.join(source, 'vendor') if has_vendor else source)
        pkg.stage = types.SimpleNamespace(path=stage, source_path=source)
        env = Env()
        pkg.setup_build_environment(env)
        environments[kind] = {k: v.replace(stage, '$STAGE') for k, v in env.vars.items()}
pkg.install(None, '/opt/academy')

print(json.dumps({
    'class': type(pkg).__name__,
    'bases': [b.__name__ for b in type(pkg).__mro__[1:-1]],
    'homepage': pkg.homepage,
    'build_targets': pkg.build_targets,
    'environments': environments,
    **recorded,
}, indent=1, sort_keys=True))
