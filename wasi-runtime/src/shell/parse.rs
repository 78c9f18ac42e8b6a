//! The shell planner: parses a command line with `brush-parser` and turns what the wasm route can
//! run into a [`Script`], or declines with a short, stable reason.
//!
//! Planning happens in two passes. The first parses and converts the whole line, declining on
//! any construct the executor cannot run (command substitution, compound commands, here-documents,
//! `${VAR:-x}`, ...). The second checks, command by command in order, that each program is a
//! builtin or one the route provides. So a line with both an unsupported construct and an
//! unknown program is declined for the construct.
//!
//! The reasons: `empty command`, `unbalanced quotes`, `nesting too deep`, `syntax error: ...`;
//! `uses command substitution`, `uses arithmetic expansion`, `uses process substitution`,
//! `uses a subshell`, `uses if|for|while|until|case`, `uses a brace group { }`,
//! `uses an arithmetic command (( ))`, `uses [[ ]]`, `uses a function definition`, `uses time`,
//! `runs in the background (&)`, `uses a here-document`, `uses a here-string`,
//! `uses brace expansion`, `uses $'...' quoting`, `uses tilde expansion ~USER`,
//! `uses parameter expansion ${...}`, `uses special variable $N`, `uses an array`,
//! `uses an append assignment (+=)`; `uses redirection <>`, `uses redirection N<|N>`,
//! `uses file descriptor N`, `uses a file descriptor out of range`, `closes a file descriptor`,
//! `uses an unsupported >&|<& redirection`; `uses program NAME`, `program name from an expansion`,
//! `empty program name`, `uses env options with a program`, `uses env option OPT`. Text quoted
//! from the line is cut to 40 characters.

use std::panic;

use brush_parser::ast::{self, CommandPrefixOrSuffixItem as Item, IoFileRedirectKind as Kind};
use brush_parser::word::{
    self as bword, BraceExpressionOrText, Parameter, ParameterExpr, SpecialParameter, WordPiece,
    WordPieceWithSource,
};
use brush_parser::{ParseError, ParserOptions, SourceInfo, Token, TokenizerError};

use self::program_check::check_programs;
use super::plan::{
    AndOrList, Connector, Pipeline, Redirect, Script, ShellPlan, SimpleCommand, Word, WordPart,
};

/// Builtins the executor implements itself; the planner allows them whatever `programs` says.
/// `cd`, `export`, `unset` and `exit` change the session, so they must run in the shell itself;
/// `true`, `false`, `:`, `pwd` and `echo` are there so the commonest lines need no guest at all.
pub const BUILTINS: &[&str] = &[
    "cd", "export", "unset", "true", "false", ":", "exit", "pwd", "echo",
];

/// brush-parser recurses once per nested `{`, `if`, `(`, ... and overflows a 1 MiB stack near 200
/// levels. Everything that nests is declined anyway, so a line with more of these tokens than
/// this is declined before it is parsed.
const MAX_NESTING_TOKENS: usize = 32;

/// The same for `$(`, `${` and backticks, which the tokenizer and word parser recurse into.
const MAX_NESTED_EXPANSIONS: usize = 128;

/// Reasons longer than this quote the user's text shortened.
const MAX_QUOTED_CHARS: usize = 40;

const EMPTY: &str = "empty command";
const UNBALANCED_QUOTES: &str = "unbalanced quotes";
const NESTING: &str = "nesting too deep";
const COMMAND_SUBSTITUTION: &str = "uses command substitution";
const ARITHMETIC: &str = "uses arithmetic expansion";
const PROCESS_SUBSTITUTION: &str = "uses process substitution";
const HERE_DOCUMENT: &str = "uses a here-document";

/// What a step of planning gives: the converted piece, or the reason to decline.
type Planned<T> = Result<T, String>;

/// Plans a command line. `programs` answers whether a command name is one the wasm route provides
/// (toolbox commands, `python3`/`python`, `node`); [`BUILTINS`] are always allowed.
///
/// Never panics: a failure inside the parser becomes a `syntax error` decline.
pub fn plan(command: &str, programs: &dyn Fn(&str) -> bool) -> ShellPlan {
    // brush-parser unwraps user-controlled numbers (`99999999999>f`, `{1..99999999999999999999}`).
    // `check_tokens` and `command_word` decline the known ones; this keeps any other from taking
    // the host down. The parser's caches release their locks before parsing, so none is poisoned.
    let built = panic::catch_unwind(|| build(command))
        .unwrap_or_else(|_| Err("syntax error: the parser failed".to_owned()));
    let checked = built.and_then(|mut script| {
        check_programs(&mut script, programs)?;
        Ok(script)
    });
    match checked {
        Ok(script) => ShellPlan::Run(script),
        Err(reason) => ShellPlan::Decline(reason),
    }
}

/// bash syntax (users write bash), but no extended globs: `!(x)` is then a syntax error instead
/// of a pattern the executor would have to understand.
fn options() -> ParserOptions {
    ParserOptions {
        enable_extended_globbing: false,
        ..ParserOptions::default()
    }
}

/// The first pass: parse and convert, declining on the first construct the executor cannot run.
fn build(command: &str) -> Planned<Script> {
    if command.trim().is_empty() {
        return Err(EMPTY.into());
    }
    let expansions = command.matches("$(").count()
        + command.matches("${").count()
        + command.matches('`').count();
    if expansions > MAX_NESTED_EXPANSIONS {
        return Err(NESTING.into());
    }
    let options = options();
    // Uncached: the crate's cached variant would keep users' command lines in a global.
    let tokens = brush_parser::uncached_tokenize_str(command, &options.tokenizer_options())
        .map_err(tokenizer_reason)?;
    check_tokens(&tokens)?;
    let program = brush_parser::parse_tokens(&tokens, &options, &SourceInfo::default())
        .map_err(parse_reason)?;
    let mut lists = Vec::new();
    for complete in &program.complete_commands {
        for ast::CompoundListItem(list, separator) in &complete.0 {
            lists.push(and_or_list(list)?);
            if matches!(separator, ast::SeparatorOperator::Async) {
                return Err("runs in the background (&)".into());
            }
        }
    }
    if lists.is_empty() {
        // Only comments or blank lines.
        return Err(EMPTY.into());
    }
    Ok(Script { lists })
}

/// Declines token streams the parser would overflow its stack on or panic over.
fn check_tokens(tokens: &[Token]) -> Planned<()> {
    let nesting = tokens
        .iter()
        .filter(|token| match token {
            Token::Operator(op, _) => op == "(",
            Token::Word(word, _) => matches!(
                word.as_str(),
                "{" | "if" | "while" | "until" | "for" | "case" | "select" | "[[" | "function"
            ),
        })
        .count();
    if nesting > MAX_NESTING_TOKENS {
        return Err(NESTING.into());
    }
    // The parser unwraps the descriptor of `N>file` into an i32.
    for pair in tokens.windows(2) {
        if let [Token::Word(number, at), Token::Operator(op, op_at)] = pair
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && op.starts_with(['<', '>'])
            && at.end.index == op_at.start.index
            && number.parse::<i32>().is_err()
        {
            return Err("uses a file descriptor out of range".into());
        }
    }
    Ok(())
}

fn tokenizer_reason(error: TokenizerError) -> String {
    match error {
        TokenizerError::UnterminatedSingleQuote(_)
        | TokenizerError::UnterminatedDoubleQuote(_)
        | TokenizerError::UnterminatedAnsiCQuote(_)
        | TokenizerError::UnterminatedBackquote(_) => UNBALANCED_QUOTES.into(),
        TokenizerError::UnterminatedHereDocuments(..)
        | TokenizerError::MissingHereTag(_)
        | TokenizerError::MissingHereTagForDocumentBody => HERE_DOCUMENT.into(),
        other => format!("syntax error: {other}"),
    }
}

fn parse_reason(error: ParseError) -> String {
    match error {
        ParseError::ParsingNearToken(token) => match token.to_str() {
            "\n" => "syntax error: unexpected newline".into(),
            text => format!("syntax error: unexpected `{}`", shorten(text)),
        },
        ParseError::ParsingAtEndOfInput => "syntax error: unexpected end of input".into(),
        ParseError::Tokenizing { inner, .. } => tokenizer_reason(inner),
    }
}

/// `text`, cut to [`MAX_QUOTED_CHARS`] so a reason stays short whatever the user typed.
fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_QUOTED_CHARS - 3).collect();
    short.push_str("...");
    short
}

fn and_or_list(list: &ast::AndOrList) -> Planned<AndOrList> {
    let first = pipeline(&list.first)?;
    let rest = list
        .additional
        .iter()
        .map(|item| match item {
            ast::AndOr::And(p) => Ok((Connector::And, pipeline(p)?)),
            ast::AndOr::Or(p) => Ok((Connector::Or, pipeline(p)?)),
        })
        .collect::<Planned<_>>()?;
    Ok(AndOrList { first, rest })
}

fn pipeline(pipeline: &ast::Pipeline) -> Planned<Pipeline> {
    if pipeline.timed.is_some() {
        return Err("uses time".into());
    }
    let commands = pipeline.seq.iter().map(command).collect::<Planned<_>>()?;
    // brush already folded `! ! a` into one inversion.
    Ok(Pipeline {
        negated: pipeline.bang,
        commands,
    })
}

fn command(command: &ast::Command) -> Planned<SimpleCommand> {
    match command {
        ast::Command::Simple(simple) => simple_command(simple),
        ast::Command::Compound(compound, _) => Err(compound_reason(compound).into()),
        ast::Command::Function(_) => Err("uses a function definition".into()),
        ast::Command::ExtendedTest(_) => Err("uses [[ ]]".into()),
    }
}

fn compound_reason(compound: &ast::CompoundCommand) -> &'static str {
    match compound {
        ast::CompoundCommand::Arithmetic(_) => "uses an arithmetic command (( ))",
        ast::CompoundCommand::ArithmeticForClause(_) | ast::CompoundCommand::ForClause(_) => {
            "uses for"
        }
        ast::CompoundCommand::BraceGroup(_) => "uses a brace group { }",
        ast::CompoundCommand::Subshell(_) => "uses a subshell",
        ast::CompoundCommand::CaseClause(_) => "uses case",
        ast::CompoundCommand::IfClause(_) => "uses if",
        ast::CompoundCommand::WhileClause(_) => "uses while",
        ast::CompoundCommand::UntilClause(_) => "uses until",
    }
}

fn simple_command(command: &ast::SimpleCommand) -> Planned<SimpleCommand> {
    let mut out = SimpleCommand {
        assignments: Vec::new(),
        words: Vec::new(),
        redirects: Vec::new(),
    };
    for item in command.prefix.iter().flat_map(|prefix| &prefix.0) {
        match item {
            Item::AssignmentWord(assignment, _) => out.assignments.push(assign(assignment)?),
            other => prefix_or_suffix_item(other, &mut out)?,
        }
    }
    if let Some(name) = &command.word_or_name {
        out.words.push(command_word(&name.value)?);
    }
    for item in command.suffix.iter().flat_map(|suffix| &suffix.0) {
        prefix_or_suffix_item(item, &mut out)?;
    }
    Ok(out)
}

/// A word or redirection around the command name. After the name, `NAME=value` is an ordinary
/// argument (`export A=1`, `env A=1 cmd`): the command gives it its meaning.
fn prefix_or_suffix_item(item: &Item, out: &mut SimpleCommand) -> Planned<()> {
    match item {
        Item::IoRedirect(redirect) => redirection(redirect, &mut out.redirects),
        Item::Word(word) => {
            out.words.push(command_word(&word.value)?);
            Ok(())
        }
        Item::AssignmentWord(assignment, word) => {
            if matches!(assignment.value, ast::AssignmentValue::Array(_)) {
                return Err("uses an array".into());
            }
            out.words.push(command_word(&word.value)?);
            Ok(())
        }
        Item::ProcessSubstitution(..) => Err(PROCESS_SUBSTITUTION.into()),
    }
}

/// `NAME=value` before the command (or alone).
fn assign(assignment: &ast::Assignment) -> Planned<(String, Word)> {
    let (ast::AssignmentName::VariableName(name), ast::AssignmentValue::Scalar(value)) =
        (&assignment.name, &assignment.value)
    else {
        return Err("uses an array".into());
    };
    if assignment.append {
        return Err("uses an append assignment (+=)".into());
    }
    // No brace expansion: bash leaves `A={a,b}` as it is.
    Ok((name.clone(), word(&value.value)?))
}

fn redirection(redirect: &ast::IoRedirect, out: &mut Vec<Redirect>) -> Planned<()> {
    match redirect {
        ast::IoRedirect::File(fd, kind, target) => file_redirection(*fd, kind, target, out),
        // `&> file` is `> file 2>&1`.
        ast::IoRedirect::OutputAndError(target, append) => {
            out.push(Redirect::Output {
                fd: 1,
                target: command_word(&target.value)?,
                append: *append,
            });
            out.push(Redirect::Duplicate { fd: 2, to: 1 });
            Ok(())
        }
        ast::IoRedirect::HereDocument(..) => Err(HERE_DOCUMENT.into()),
        ast::IoRedirect::HereString(..) => Err("uses a here-string".into()),
    }
}

fn file_redirection(
    fd: Option<ast::IoFd>,
    kind: &Kind,
    target: &ast::IoFileRedirectTarget,
    out: &mut Vec<Redirect>,
) -> Planned<()> {
    let file = || match target {
        ast::IoFileRedirectTarget::Filename(word) => command_word(&word.value),
        ast::IoFileRedirectTarget::ProcessSubstitution(..) => Err(PROCESS_SUBSTITUTION.into()),
        _ => Err("syntax error: bad redirection".into()),
    };
    let redirect = match kind {
        Kind::Read => Redirect::Input {
            fd: descriptor(fd.unwrap_or(0), &[0], "<")?,
            target: file()?,
        },
        // `>|` only differs from `>` under `set -C`, which a plan never has.
        Kind::Write | Kind::Clobber | Kind::Append => Redirect::Output {
            fd: descriptor(fd.unwrap_or(1), &[1, 2], ">")?,
            target: file()?,
            append: matches!(kind, Kind::Append),
        },
        Kind::ReadAndWrite => return Err("uses redirection <>".into()),
        Kind::DuplicateInput | Kind::DuplicateOutput => {
            let output = matches!(kind, Kind::DuplicateOutput);
            let to = match target {
                ast::IoFileRedirectTarget::Fd(to) => *to,
                ast::IoFileRedirectTarget::Duplicate(word) => {
                    let text = word.value.as_str();
                    if text == "-" {
                        return Err("closes a file descriptor".into());
                    }
                    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                        // bash reads `>& file` as `&> file`; `2>&file` and `<&file` are errors.
                        if output && fd.is_none() {
                            return redirection(
                                &ast::IoRedirect::OutputAndError(word.clone(), false),
                                out,
                            );
                        }
                        let op = if output { ">&" } else { "<&" };
                        return Err(format!("uses an unsupported {op} redirection"));
                    }
                    text.parse()
                        .map_err(|_| "uses a file descriptor out of range".to_owned())?
                }
                ast::IoFileRedirectTarget::ProcessSubstitution(..) => {
                    return Err(PROCESS_SUBSTITUTION.into());
                }
                ast::IoFileRedirectTarget::Filename(_) => {
                    return Err("syntax error: bad redirection".into());
                }
            };
            let all = [0, 1, 2];
            Redirect::Duplicate {
                fd: descriptor(fd.unwrap_or(if output { 1 } else { 0 }), &all, "")?,
                to: descriptor(to, &all, "")?,
            }
        }
    };
    out.push(redirect);
    Ok(())
}

/// The executor has stdin, stdout and stderr only, and reads only fd 0 and writes only 1 and 2.
fn descriptor(fd: ast::IoFd, allowed: &[ast::IoFd], op: &str) -> Planned<u32> {
    if !(0..=2).contains(&fd) {
        return Err(format!("uses file descriptor {fd}"));
    }
    if !allowed.contains(&fd) {
        return Err(format!("uses redirection {fd}{op}"));
    }
    u32::try_from(fd).map_err(|_| format!("uses file descriptor {fd}"))
}

/// A command word or redirection target: a [`word`] that must not brace-expand either.
fn command_word(raw: &str) -> Planned<Word> {
    // Only `{a,b}` and `{1..3}` forms expand; skip the parse for words that cannot be one.
    if raw.contains('{') && (raw.contains(',') || raw.contains("..")) {
        // The brace parser unwraps its numbers into i64.
        let long_number = raw
            .split(|c: char| !c.is_ascii_digit())
            .any(|digits| digits.len() > 18);
        if long_number {
            return Err("uses brace expansion".into());
        }
        let pieces = bword::parse_brace_expansions(raw, &options())
            .map_err(|e| format!("syntax error: {e}"))?;
        let expands = pieces
            .iter()
            .flatten()
            .any(|piece| matches!(piece, BraceExpressionOrText::Expr(_)));
        if expands {
            return Err("uses brace expansion".into());
        }
    }
    word(raw)
}

/// Converts a word as the tokenizer gave it (quotes and all) to parts, quote removal done.
fn word(raw: &str) -> Planned<Word> {
    let pieces = bword::parse(raw, &options()).map_err(|e| format!("syntax error: {e}"))?;
    let mut parts = Vec::new();
    for piece in &pieces {
        word_piece(raw, piece, false, &mut parts)?;
    }
    // An empty quoted part only matters when nothing else in the word is text: `''` and `$X""`
    // are kept so they never vanish, `a''` is just `a`.
    let has_text = parts
        .iter()
        .any(|part| matches!(part, WordPart::Literal { text, .. } if !text.is_empty()));
    if !has_text {
        return Ok(Word(parts));
    }
    // Dropping `''` from `x''y` leaves two literals to join.
    let mut joined = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            WordPart::Literal { text, .. } if text.is_empty() => {}
            WordPart::Literal { text, quoted } => push_literal(&mut joined, &text, quoted),
            other => joined.push(other),
        }
    }
    Ok(Word(joined))
}

fn word_piece(
    raw: &str,
    piece: &WordPieceWithSource,
    in_double_quotes: bool,
    out: &mut Vec<WordPart>,
) -> Planned<()> {
    match &piece.piece {
        WordPiece::Text(text) => push_literal(out, text, in_double_quotes),
        WordPiece::SingleQuotedText(text) => push_literal(out, text, true),
        // `$"..."` is a translatable string: without a message catalog it is a plain `"..."`.
        WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
            let before = out.len();
            for piece in inner {
                word_piece(raw, piece, true, out)?;
            }
            if out.len() == before {
                // `""` is still an argument.
                push_literal(out, "", true);
            }
        }
        // `\x` quotes x. Inside double quotes brush reports only `\$ \` \" \\` as escapes and
        // keeps other backslashes in the text, as POSIX says.
        WordPiece::EscapeSequence(escape) => {
            push_literal(out, escape.strip_prefix('\\').unwrap_or(escape), true);
        }
        WordPiece::TildePrefix(user) if user.is_empty() => out.push(WordPart::Tilde),
        WordPiece::TildePrefix(user) => {
            return Err(format!("uses tilde expansion ~{}", shorten(user)));
        }
        WordPiece::ParameterExpansion(expr) => {
            out.push(parameter(raw, piece, expr, in_double_quotes)?);
        }
        WordPiece::AnsiCQuotedText(_) => return Err("uses $'...' quoting".into()),
        WordPiece::CommandSubstitution(_) | WordPiece::BackquotedCommandSubstitution(_) => {
            return Err(COMMAND_SUBSTITUTION.into());
        }
        WordPiece::ArithmeticExpression(_) => return Err(ARITHMETIC.into()),
    }
    Ok(())
}

/// Appends literal text, joining it to the previous part when that is literal text quoted the
/// same way, so equal words always give equal parts.
fn push_literal(out: &mut Vec<WordPart>, text: &str, quoted: bool) {
    if let Some(WordPart::Literal {
        text: previous,
        quoted: previous_quoted,
    }) = out.last_mut()
        && *previous_quoted == quoted
    {
        previous.push_str(text);
        return;
    }
    out.push(WordPart::Literal {
        text: text.to_owned(),
        quoted,
    });
}

fn parameter(
    raw: &str,
    piece: &WordPieceWithSource,
    expr: &ParameterExpr,
    quoted: bool,
) -> Planned<WordPart> {
    let ParameterExpr::Parameter {
        parameter,
        indirect: false,
    } = expr
    else {
        let source = raw
            .get(piece.start_index..piece.end_index)
            .unwrap_or("${...}");
        return Err(format!("uses parameter expansion {}", shorten(source)));
    };
    let special = match parameter {
        // bash's `$_` is the previous command's last argument, not a variable the session has.
        Parameter::Named(name) if name == "_" => "_".to_owned(),
        Parameter::Named(name) => {
            return Ok(WordPart::Var {
                name: name.clone(),
                quoted,
            });
        }
        Parameter::Special(SpecialParameter::LastExitStatus) => return Ok(WordPart::LastStatus),
        Parameter::Special(special) => special_name(special).to_owned(),
        Parameter::Positional(n) => n.to_string(),
        Parameter::NamedWithIndex { .. } | Parameter::NamedWithAllIndices { .. } => {
            return Err("uses an array".into());
        }
    };
    Err(format!("uses special variable ${special}"))
}

fn special_name(special: &SpecialParameter) -> &'static str {
    match special {
        SpecialParameter::AllPositionalParameters { concatenate: false } => "@",
        SpecialParameter::AllPositionalParameters { concatenate: true } => "*",
        SpecialParameter::PositionalParameterCount => "#",
        SpecialParameter::LastExitStatus => "?",
        SpecialParameter::CurrentOptionFlags => "-",
        SpecialParameter::ProcessId => "$",
        SpecialParameter::LastBackgroundProcessId => "!",
        SpecialParameter::ShellName => "0",
    }
}

/// The second pass: the programs.
#[path = "parse_programs.rs"]
mod program_check;

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
