// hybox's JavaScript guest driver: a read-eval loop inside QuickJS-NG's reactor (which exports
// no eval). The host writes "<byte length>\n<code>" to stdin; each evaluation runs in the global
// scope (so var/let/function persist) and ends with an END frame. Results and errors travel as
// door calls of wit/hybox.wit, framed on stdout as "\0HYBOX:<json>\n".
(function () {
  const MARK = "\x00HYBOX:";
  function frame(obj) {
    std.out.flush();
    std.out.puts(MARK + JSON.stringify(obj) + "\n");
    std.out.flush();
  }
  function text(v) {
    if (typeof v === "string") return v;
    if (typeof v === "function") return "[Function: " + (v.name || "anonymous") + "]";
    if (typeof v === "symbol" || typeof v === "bigint") return v.toString() + (typeof v === "bigint" ? "n" : "");
    if (v !== null && typeof v === "object") {
      try {
        const s = JSON.stringify(v);
        if (s !== undefined) return s;
      } catch (e) {}
    }
    return String(v);
  }
  function bundle(v) {
    const out = [];
    if (v !== null && typeof v === "object") {
      try {
        const s = JSON.stringify(v);
        if (s !== undefined) out.push({ mime: "application/json", data: s });
      } catch (e) {}
    }
    out.push({ mime: "text/plain", data: text(v) });
    return out;
  }
  globalThis.display = function (...values) {
    for (const v of values) frame({ method: "display", params: { bundle: bundle(v), kind: "display-data" } });
  };
  for (;;) {
    const header = std.in.getline();
    if (header === null) break;
    const code = std.in.readAsString(+header);
    try {
      const value = std.evalScript(code);
      if (value !== undefined) {
        frame({ method: "display", params: { bundle: bundle(value), kind: "execute-result" } });
      }
    } catch (e) {
      const isErr = e !== null && typeof e === "object";
      const stack = isErr && e.stack ? String(e.stack).split("\n").filter((l) => l.length > 0) : [];
      frame({
        method: "report-error",
        params: {
          name: isErr && e.name ? String(e.name) : "Error",
          value: isErr && "message" in e ? String(e.message) : String(e),
          traceback: stack,
        },
      });
    }
    std.out.flush();
    std.err.flush();
    std.out.puts(MARK + "END\n");
    std.out.flush();
  }
})();
