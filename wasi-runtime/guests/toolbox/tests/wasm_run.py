#!/usr/bin/env python3
"""Run toolbox.wasm under wasmtime (the `wasmtime` PyPI package) the way hybox does:
argv[0] is the command name, the current host directory is preopened as /workspace,
/tmp is preopened as /tmp, and PWD tells the guest its working directory.

Usage: wasm_run.py TOOLBOX.wasm CMD [ARGS...]
Env:   TOOLBOX_WASM_CACHE  path of a serialized (precompiled) module to reuse.
"""
import os
import sys

import wasmtime


def main():
    wasm, argv = sys.argv[1], sys.argv[2:]
    engine = wasmtime.Engine()
    cache = os.environ.get("TOOLBOX_WASM_CACHE")
    module = None
    if cache and os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(wasm):
        try:
            module = wasmtime.Module.deserialize_file(engine, cache)
        except Exception:
            module = None
    if module is None:
        module = wasmtime.Module.from_file(engine, wasm)
        if cache:
            tmp = cache + ".%d" % os.getpid()
            with open(tmp, "wb") as f:
                f.write(module.serialize())
            os.replace(tmp, cache)
    store = wasmtime.Store(engine)
    cfg = wasmtime.WasiConfig()
    cfg.argv = argv
    env = [(k, v) for k, v in os.environ.items() if k in ("LC_ALL", "LANG", "LC_CTYPE", "TZ", "COLUMNS", "HOME", "USER")]
    env.append(("PWD", "/workspace"))
    env.append(("PATH", "/usr/bin:/bin"))
    cfg.env = env
    cfg.preopen_dir(os.getcwd(), "/workspace")
    cfg.preopen_dir("/tmp", "/tmp")
    cfg.inherit_stdin()
    cfg.inherit_stdout()
    cfg.inherit_stderr()
    store.set_wasi(cfg)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    inst = linker.instantiate(store, module)
    try:
        inst.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        sys.stdout.flush()
        os._exit(e.code)
    except wasmtime.WasmtimeError as e:
        print("wasm_run: trap: %s" % e, file=sys.stderr)
        os._exit(134)
    os._exit(0)


if __name__ == "__main__":
    main()
