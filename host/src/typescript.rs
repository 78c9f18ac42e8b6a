//! TypeScript → JavaScript by stripping types on the host.
//!
//! [`strip_types`] parses the source as TypeScript (not TSX) with `oxc`, runs
//! only the TypeScript part of the `oxc` transformer (target `esnext`, so no
//! ECMAScript syntax is lowered) and prints the result back as JavaScript.
//!
//! The output is meant to be evaluated as a *script* by a persistent,
//! REPL-like QuickJS-NG context, so the transform keeps the shape of the
//! program:
//!
//! * type annotations, interfaces, type aliases, `as`/`satisfies`/`!`,
//!   generics, overloads, `declare` declarations and type-only
//!   imports/exports are removed;
//! * enums and namespaces become plain JavaScript (`var`/`let` plus an
//!   immediately invoked function), parameter properties become assignments in
//!   the constructor;
//! * top-level declarations stay top-level and in order, and nothing is
//!   appended after the last statement, so the completion value of the last
//!   expression statement is still the value of the evaluation;
//! * value `import`/`export` statements are kept as written (the caller
//!   rejects them); only the explicitly type-only ones (`import type`,
//!   `export type`, `type` specifiers) are removed.

use std::path::Path;

use oxc::allocator::Allocator;
use oxc::ast::ast::{Program, Statement};
use oxc::codegen::Codegen;
use oxc::diagnostics::{LabeledSpan, OxcDiagnostic};
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::{SPAN, SourceType};
use oxc::transformer::{ESTarget, TransformOptions, Transformer, TypeScriptOptions};

/// Why TypeScript source could not be turned into JavaScript.
#[derive(Debug, thiserror::Error)]
pub enum TsError {
    /// The source does not parse as TypeScript (or breaks an early-error rule
    /// of the language, such as declaring the same `let` twice).
    #[error("typescript syntax error: {message}")]
    Syntax {
        /// The first error reported by the parser.
        message: String,
        /// 1-based line of the error.
        line: u32,
        /// 1-based column of the error, counted in characters.
        column: u32,
    },
    /// The transform from TypeScript to JavaScript failed.
    #[error("typescript transform failed: {0}")]
    Transform(String),
}

/// Strips TypeScript syntax, returning JavaScript with the same statements and order.
///
/// # Errors
///
/// [`TsError::Syntax`] with the position of the first error when the source
/// is not valid TypeScript (including early errors such as a redeclared
/// `let`); [`TsError::Transform`] when the transform reports an error (its
/// warnings, e.g. about partially supported namespaces, are ignored).
pub fn strip_types(source: &str) -> Result<String, TsError> {
    let allocator = Allocator::default();
    // `SourceType::ts()` is "unambiguous": a script unless the source has
    // `import`/`export` (or top-level `await`), which suits a REPL.
    let parsed = Parser::new(&allocator, source, SourceType::ts()).parse();
    if let Some(error) = first_error(parsed.diagnostics.errors()) {
        return Err(syntax_error(source, error));
    }
    if parsed.panicked {
        return Err(TsError::Syntax {
            message: "the parser could not recover".to_owned(),
            line: 1,
            column: 1,
        });
    }
    let mut program = parsed.program;

    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        .with_excess_capacity(2.0)
        .with_enum_eval(true)
        .build(&program);
    if let Some(error) = first_error(semantic.diagnostics.errors()) {
        return Err(syntax_error(source, error));
    }
    let scoping = semantic.semantic.into_scoping();

    let options = transform_options();
    let transformed = Transformer::new(&allocator, Path::new("input.ts"), &options)
        .build_with_scoping(scoping, &mut program);
    if let Some(error) = transformed.diagnostics.errors().next() {
        return Err(TsError::Transform(error.message.to_string()));
    }
    drop_synthesized_empty_export(&mut program);

    Ok(Codegen::new().build(&program).code)
}

/// Transform options: TypeScript only, nothing lowered.
fn transform_options() -> TransformOptions {
    TransformOptions {
        typescript: TypeScriptOptions {
            // Keep every value import as written, even when its bindings are
            // unused or only used as types: the caller rejects module syntax,
            // and silently dropping an import would hide that. Only explicitly
            // type-only imports (`import type`, `type` specifiers) go away.
            only_remove_type_imports: true,
            ..TypeScriptOptions::default()
        },
        // `esnext`: no ECMAScript feature is downleveled.
        ..TransformOptions::from(ESTarget::ESNext)
    }
}

/// Removes the `export {}` that the TypeScript transform appends when it
/// removed every import/export of the program (e.g. only `import type` was
/// present). It would turn the script into a module and would come after the
/// last expression statement. A user-written `export {}` has a real span and
/// is kept.
fn drop_synthesized_empty_export(program: &mut Program<'_>) {
    let synthesized = matches!(
        program.body.last(),
        Some(Statement::ExportNamedDeclaration(export))
            if export.span == SPAN && export.specifiers.is_empty()
    );
    if synthesized {
        program.body.pop();
    }
}

/// The first error, preferring the earliest position in the source.
fn first_error<'d>(errors: impl Iterator<Item = &'d OxcDiagnostic>) -> Option<&'d OxcDiagnostic> {
    errors.min_by_key(|error| error_offset(error).unwrap_or(u32::MAX))
}

/// Byte offset of a diagnostic: the offset of its primary label; without one,
/// the latest labelled offset, which is where the error was found (e.g. the
/// second of two conflicting declarations) rather than its context.
fn error_offset(error: &OxcDiagnostic) -> Option<u32> {
    match error.labels.iter().find(|label| label.primary()) {
        Some(primary) => Some(primary.offset()),
        None => error.labels.iter().map(LabeledSpan::offset).max(),
    }
}

fn syntax_error(source: &str, error: &OxcDiagnostic) -> TsError {
    let offset = error_offset(error).unwrap_or(0);
    let (line, column) = line_column(source, offset as usize);
    TsError::Syntax {
        message: error.message.to_string(),
        line,
        column,
    }
}

/// 1-based line and column (in characters) of a byte offset. Line breaks are
/// those of JavaScript: `\n`, `\r\n`, a lone `\r`, U+2028 and U+2029.
fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let mut line: u32 = 1;
    let mut column: u32 = 1;
    let mut chars = source
        .char_indices()
        .take_while(|&(index, _)| index < offset)
        .peekable();
    while let Some((_, c)) = chars.next() {
        let breaks = match c {
            '\n' | '\u{2028}' | '\u{2029}' => true,
            '\r' => chars.peek().is_none_or(|&(_, next)| next != '\n'),
            _ => false,
        };
        if breaks {
            line = line.saturating_add(1);
            column = 1;
        } else if c != '\r' {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of a successful strip.
    fn strip(source: &str) -> String {
        match strip_types(source) {
            Ok(js) => js,
            Err(error) => panic!("strip_types({source:?}) failed: {error}"),
        }
    }

    /// Statements of `js` parsed as plain JavaScript (a script); panics if it
    /// does not parse.
    fn assert_parses_as_js(js: &str) {
        let allocator = Allocator::default();
        let parsed = Parser::new(&allocator, js, SourceType::mjs().with_script(true)).parse();
        assert!(
            parsed.diagnostics.is_empty() && !parsed.panicked,
            "output is not a JavaScript script: {:?}\n{js}",
            parsed.diagnostics
        );
    }

    /// The last non-empty line of the output.
    fn last_line(js: &str) -> &str {
        js.lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("")
    }

    #[test]
    fn removes_interfaces_and_type_aliases() {
        let js = strip(
            "interface Point { x: number; y: number }\n\
             type Id = string | number;\n\
             const p: Point = { x: 1, y: 2 };\n\
             p.x",
        );
        assert!(!js.contains("interface"), "{js}");
        assert!(!js.contains("type "), "{js}");
        assert!(!js.contains("Id"), "{js}");
        assert!(js.contains("const p = {"), "{js}");
        assert_eq!(last_line(&js), "p.x;");
        assert_parses_as_js(&js);
    }

    #[test]
    fn annotated_function_keeps_body() {
        let js = strip("function add(a: number, b: number = 1): number {\n  return a + b;\n}\n");
        assert!(js.contains("function add(a, b = 1) {"), "{js}");
        assert!(js.contains("return a + b;"), "{js}");
        assert!(!js.contains("number"), "{js}");
        assert_parses_as_js(&js);
    }

    #[test]
    fn variable_annotation_removed() {
        assert_eq!(strip("let x: number = 1"), "let x = 1;\n");
        assert_eq!(
            strip("const s: string | undefined = undefined;"),
            "const s = undefined;\n"
        );
    }

    #[test]
    fn enum_becomes_working_javascript() {
        let js = strip("enum Color { Red, Green = 5, Blue }\nColor.Blue");
        assert!(!js.contains("enum "), "{js}");
        assert!(js.contains("Color[Color[\"Red\"] = 0] = \"Red\""), "{js}");
        assert!(
            js.contains("Color[Color[\"Green\"] = 5] = \"Green\""),
            "{js}"
        );
        assert!(js.contains("Color[Color[\"Blue\"] = 6] = \"Blue\""), "{js}");
        // The enum binding is a top-level declaration, the expression stays last.
        assert!(js.starts_with("var Color = "), "{js}");
        assert_eq!(last_line(&js), "Color.Blue;");
        assert_parses_as_js(&js);

        let js = strip("const enum Dir { Up = \"UP\", Down = \"DOWN\" }\nDir.Down");
        assert!(js.contains("Dir[\"Down\"] = \"DOWN\""), "{js}");
        assert_parses_as_js(&js);
    }

    #[test]
    fn generics_removed() {
        let js = strip(
            "function id<T extends object>(x: T): T { return x; }\n\
             class Box<T> { constructor(readonly value: T) {} }\n\
             const m = new Map<string, Array<number>>();\n\
             id<{ a: number }>({ a: 1 })",
        );
        assert!(!js.contains('<'), "{js}");
        assert!(!js.contains('>'), "{js}");
        assert!(js.contains("function id(x) {"), "{js}");
        assert!(js.contains("class Box {"), "{js}");
        assert!(js.contains("new Map()"), "{js}");
        assert_eq!(last_line(&js), "id({ a: 1 });");
        assert_parses_as_js(&js);
    }

    #[test]
    fn as_const_satisfies_and_non_null_removed() {
        let js = strip(
            "const xs = [1, 2, 3] as const;\n\
             const cfg = { port: 80 } satisfies Record<string, number>;\n\
             const el = (xs as readonly number[])[0]!;\n\
             <number>el",
        );
        assert!(!js.contains(" as "), "{js}");
        assert!(!js.contains("satisfies"), "{js}");
        assert!(!js.contains('!'), "{js}");
        assert!(
            js.starts_with("const xs = [\n\t1,\n\t2,\n\t3\n];\n"),
            "{js}"
        );
        assert!(js.contains("const cfg = { port: 80 };"), "{js}");
        assert_eq!(last_line(&js), "el;");
        assert_parses_as_js(&js);
    }

    #[test]
    fn class_parameter_properties() {
        let js = strip(
            "class Point implements HasX {\n\
             \x20 private z: number = 0;\n\
             \x20 declare w: string;\n\
             \x20 constructor(public x: number, private readonly y?: number) {}\n\
             \x20 abstract_like(): void {}\n\
             }\n\
             new Point(1, 2)",
        );
        assert!(js.contains("class Point {"), "{js}");
        assert!(js.contains("constructor(x, y) {"), "{js}");
        assert!(js.contains("this.x = x;"), "{js}");
        assert!(js.contains("this.y = y;"), "{js}");
        assert!(js.contains("z = 0;"), "{js}");
        assert!(!js.contains("private"), "{js}");
        assert!(!js.contains("public"), "{js}");
        assert!(!js.contains("readonly"), "{js}");
        assert!(!js.contains("implements"), "{js}");
        assert!(!js.contains(" w"), "{js}");
        assert_eq!(last_line(&js), "new Point(1, 2);");
        assert_parses_as_js(&js);
    }

    #[test]
    fn last_expression_statement_stays_last() {
        let js = strip("let a: number = 2;\na * 21");
        assert_eq!(js, "let a = 2;\na * 21;\n");

        // Type-only statements after the expression vanish rather than move.
        let js = strip("const n = 1 as number;\nn + 1\ntype T = number;\ninterface I {}\n");
        assert_eq!(last_line(&js), "n + 1;");
        assert_parses_as_js(&js);
    }

    #[test]
    fn top_level_declarations_stay_top_level() {
        let js = strip(
            "let a: number = 1;\n\
             const b = 2;\n\
             function f(): void {}\n\
             class C {}\n\
             namespace NS { export const v = 1; }\n\
             a + b",
        );
        for decl in [
            "let a = 1;",
            "const b = 2;",
            "function f() {}",
            "class C {}",
            "let NS;",
        ] {
            assert!(
                js.lines().any(|line| line == decl),
                "missing top-level {decl:?} in\n{js}"
            );
        }
        assert!(!js.contains("=>"), "{js}");
        assert_eq!(last_line(&js), "a + b;");
        assert_parses_as_js(&js);
    }

    #[test]
    fn declare_and_overloads_removed() {
        let js = strip(
            "declare const VERSION: string;\n\
             declare function ext(x: number): void;\n\
             declare global { interface Window { x: 1 } }\n\
             function over(x: string): string;\n\
             function over(x: number): number;\n\
             function over(x: any): any { return x; }\n\
             over(1)",
        );
        assert!(!js.contains("declare"), "{js}");
        assert!(!js.contains("VERSION"), "{js}");
        assert!(!js.contains("ext"), "{js}");
        assert_eq!(js.matches("function over").count(), 1, "{js}");
        assert_eq!(last_line(&js), "over(1);");
        assert_parses_as_js(&js);
    }

    #[test]
    fn type_only_imports_removed_value_imports_kept() {
        // Only type-only module syntax: removed entirely, nothing appended.
        let js = strip("import type { A } from \"./a\";\nexport type { B } from \"./b\";\n1 + 1");
        assert_eq!(js, "1 + 1;\n");

        // Value imports/exports stay as written, even if only used as types.
        let js = strip(
            "import { Foo, type Bar } from \"./foo\";\n\
             let f: Foo | Bar;\n\
             export const x: number = 1;",
        );
        assert!(js.contains("import { Foo } from \"./foo\";"), "{js}");
        assert!(js.contains("export const x = 1;"), "{js}");
        assert!(!js.contains("Bar"), "{js}");
    }

    #[test]
    fn no_downleveling() {
        let source = "class K { #p = 1; static { this.s = 2; } get p() { return this.#p; } }\n\
                      let o: any = null;\n\
                      o ??= { a: { b: 2 } };\n\
                      const { a, ...rest } = o;\n\
                      const big = 10n ** 2n;\n\
                      async function* gen() { for await (const v of [1]) yield v; }\n\
                      const arrow = async (x: number) => x?.toString() ?? \"\";\n\
                      try { } catch { }\n\
                      const re = /(?<year>\\d{4})-\\p{L}/dv;\n\
                      a?.b";
        let js = strip(source);
        for feature in [
            "#p = 1",
            "static {",
            "??=",
            "...rest",
            "10n ** 2n",
            "async function* gen()",
            "for await (const v of [1])",
            "async (x) => x?.toString() ?? \"\"",
            "catch {",
            "/(?<year>\\d{4})-\\p{L}/dv",
        ] {
            assert!(js.contains(feature), "{feature:?} was lowered in\n{js}");
        }
        assert!(
            !js.contains("_classPrivateFieldGet") && !js.contains("babelHelpers"),
            "{js}"
        );
        assert_eq!(last_line(&js), "a?.b;");
        assert_parses_as_js(&js);
    }

    /// Message, line and column of the syntax error `source` must give.
    fn syntax_error_of(source: &str) -> (String, u32, u32) {
        match strip_types(source) {
            Err(TsError::Syntax {
                message,
                line,
                column,
            }) => (message, line, column),
            other => panic!("expected a syntax error for {source:?}, got {other:?}"),
        }
    }

    #[test]
    fn syntax_error_reports_line_and_column() {
        let (message, line, column) = syntax_error_of("let a = 1;\nlet b: number = ;\nb");
        assert_eq!((line, column), (2, 17), "{message}");
        assert!(!message.is_empty());

        let (message, line, _) = syntax_error_of("const ok = 1;\r\n\r\nfunction (x: number {\n");
        assert_eq!(line, 3, "{message}");

        let error = TsError::Syntax {
            message: "Unexpected token".to_owned(),
            line: 1,
            column: 1,
        };
        assert_eq!(
            error.to_string(),
            "typescript syntax error: Unexpected token"
        );
    }

    #[test]
    fn syntax_error_column_counts_characters() {
        // "é" and "😀" are multi-byte in UTF-8 but one character each. The
        // error is found at the `;` after `let =`; counting bytes would give 27.
        let (message, line, column) = syntax_error_of("const s = \"é😀\"; let = ;");
        assert_eq!((line, column), (1, 23), "{message}");
    }

    #[test]
    fn early_errors_are_syntax_errors() {
        // Reported where the second declaration is, not at the first one.
        let (message, line, column) = syntax_error_of("let a = 1;\nlet a = 2;");
        assert_eq!((line, column), (2, 5), "{message}");
        assert!(message.contains("already been declared"), "{message}");
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert_eq!(strip(""), "");
        assert_eq!(
            strip("type OnlyTypes = string;\ninterface I {}\n").trim(),
            ""
        );
    }

    #[test]
    fn unicode_preserved() {
        let js = strip(
            "const greeting: string = \"héllo wörld 你好 😀\";\nconst ñ = `ü${greeting}`;\nñ",
        );
        assert!(js.contains("\"héllo wörld 你好 😀\""), "{js}");
        assert!(js.contains("const ñ = `ü${greeting}`;"), "{js}");
        assert_eq!(last_line(&js), "ñ;");
        assert_parses_as_js(&js);
    }

    #[test]
    fn plain_javascript_passes_through() {
        let js = strip("var x = 1;\nx += 2;\nif (x > 2) { x = x * 2; }\nx");
        assert_eq!(
            js,
            "var x = 1;\nx += 2;\nif (x > 2) {\n\tx = x * 2;\n}\nx;\n"
        );
    }

    #[test]
    fn line_column_handles_line_breaks() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 2), (1, 3));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("a\r\nbc", 4), (2, 2));
        assert_eq!(line_column("a\rb", 2), (2, 1));
        assert_eq!(line_column("é\nx", 10), (2, 2));
    }
}
