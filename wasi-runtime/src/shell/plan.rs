//! The plan of a command line: what the shell planner produces and the executor runs.
//!
//! Words are kept unexpanded: `cd src; ls $DIR/*.py` must expand `$DIR` and the glob after the
//! `cd` ran, so the executor expands each simple command just before it runs it.

/// A whole command line: and-or lists separated by `;` or newlines, run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The lists, in order.
    pub lists: Vec<AndOrList>,
}

/// `a && b || c`: pipelines joined by `&&` / `||`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOrList {
    /// The first pipeline.
    pub first: Pipeline,
    /// The rest, each with the connector before it.
    pub rest: Vec<(Connector, Pipeline)>,
}

/// How a pipeline joins the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// `&&`: run if the previous status was 0.
    And,
    /// `||`: run if the previous status was not 0.
    Or,
}

/// `! a | b | c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// `!` in front: the status is inverted.
    pub negated: bool,
    /// The commands, stdout of each into stdin of the next.
    pub commands: Vec<SimpleCommand>,
}

/// `NAME=value ... word word ... redirections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// Assignments before the command name (for the command only; for the session when there
    /// is no command).
    pub assignments: Vec<(String, Word)>,
    /// The command name and its arguments. Empty for a bare assignment or redirection.
    pub words: Vec<Word>,
    /// Redirections, in order.
    pub redirects: Vec<Redirect>,
}

/// A redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `N> file` (`append`: `N>> file`); fd defaults to 1.
    Output {
        /// The descriptor redirected (1 or 2).
        fd: u32,
        /// The file.
        target: Word,
        /// `>>`.
        append: bool,
    },
    /// `N< file`; fd defaults to 0.
    Input {
        /// The descriptor redirected (0).
        fd: u32,
        /// The file.
        target: Word,
    },
    /// `N>&M` (`2>&1`).
    Duplicate {
        /// The descriptor redirected.
        fd: u32,
        /// The descriptor it becomes a copy of.
        to: u32,
    },
}

/// A word before expansion: a sequence of parts, concatenated after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(pub Vec<WordPart>);

/// One part of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordPart {
    /// Literal text, quoting already removed. `quoted` is true when it came from inside quotes
    /// (then glob characters in it are literal, and it never splits).
    Literal {
        /// The text.
        text: String,
        /// Whether it was quoted.
        quoted: bool,
    },
    /// `$NAME` / `${NAME}`; `quoted` when inside double quotes (no field splitting, no glob).
    Var {
        /// The variable.
        name: String,
        /// Whether it was inside double quotes.
        quoted: bool,
    },
    /// `$?`.
    LastStatus,
    /// A leading `~` (unquoted): the session's HOME.
    Tilde,
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellPlan {
    /// The wasm route can run it.
    Run(Script),
    /// It cannot, and why (`uses program apt-get`, `uses command substitution`, ...).
    Decline(String),
}
