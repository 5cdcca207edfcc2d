//! The arguments of `#[redlock(...)]`: parsed with their spans, each value checked on its own.

use proc_macro2::Span;
use syn::{
    Expr, ExprLit, ExprUnary, Ident, Lit, LitBool, LitInt, LitStr, Path, Token, UnOp,
    ext::IdentExt,
    parse::{Parse, ParseStream},
    spanned::Spanned,
};

/// A number of seconds: its value, and the literal as written (sign included) for errors.
pub(crate) struct Seconds {
    pub(crate) value: f64,
    pub(crate) literal: Expr,
}

/// The value of `name` or `stats_name`.
pub(crate) enum Text {
    /// A format string over the function's variables: `"job:{id}"`.
    Format(LitStr),
    /// Any expression whose value is displayed: `format!("job:{}", job.id)`, `job.lock_key()`.
    Expr(Expr),
}

/// The options as written; each present one keeps its span for later errors.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<Text>,
    pub(crate) timeout: Option<Seconds>,
    pub(crate) auto_release_time: Option<Seconds>,
    pub(crate) silent: Option<Span>,
    pub(crate) stats_name: Option<Text>,
    pub(crate) client: Option<Expr>,
    pub(crate) auto_extend: Option<LitBool>,
    pub(crate) stats: Option<LitBool>,
    pub(crate) guard: Option<Ident>,
    pub(crate) abort_on_lost: Option<Span>,
    pub(crate) reentrant: Option<Span>,
    pub(crate) min_hold: Option<Seconds>,
    pub(crate) permits: Option<LitInt>,
    pub(crate) krate: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            if !input.peek(Ident::peek_any) {
                return Err(input.error(format!("expected an option: one of {}", options())));
            }
            // `crate` too, a keyword.
            let key = input.call(Ident::parse_any)?;
            args.set(&key, input)?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

impl Args {
    /// Parses the value of the option `key` (a flag has none) and sets it, once.
    fn set(&mut self, key: &Ident, input: ParseStream<'_>) -> syn::Result<()> {
        let option = key.to_string();
        let seconds_of = |choices| seconds(value_of(input)?, &option, choices);
        let text_of = || text(value_of(input)?, &option);
        let boolean_of = || boolean(value_of(input)?, &option);
        let flag_of = || flag(input, &option).map(|()| key.span());
        match option.as_str() {
            "name" => set_once(&mut self.name, text_of()?, key),
            "stats_name" => set_once(&mut self.stats_name, text_of()?, key),
            "timeout" => set_once(&mut self.timeout, seconds_of(TIMEOUT_CHOICES)?, key),
            "auto_release_time" => {
                set_once(&mut self.auto_release_time, seconds_of(TTL_CHOICES)?, key)
            }
            "min_hold" => set_once(&mut self.min_hold, seconds_of(MIN_HOLD_CHOICES)?, key),
            "silent" => set_once(&mut self.silent, flag_of()?, key),
            "reentrant" => set_once(&mut self.reentrant, flag_of()?, key),
            "abort_on_lost" => set_once(&mut self.abort_on_lost, flag_of()?, key),
            "client" => set_once(&mut self.client, value_of(input)?, key),
            "auto_extend" => set_once(&mut self.auto_extend, boolean_of()?, key),
            "stats" => set_once(&mut self.stats, boolean_of()?, key),
            "guard" => set_once(&mut self.guard, identifier(value_of(input)?)?, key),
            "permits" => set_once(&mut self.permits, integer(value_of(input)?, &option)?, key),
            "crate" => set_once(&mut self.krate, crate_path(value_of(input)?)?, key),
            _ => {
                let hint = closest_option(&option)
                    .map(|option| format!("did you mean `{option}`? "))
                    .unwrap_or_default();
                Err(syn::Error::new_spanned(
                    key,
                    format!(
                        "unknown option `{option}`: {hint}expected one of {}",
                        options()
                    ),
                ))
            }
        }
    }
}

/// The value of `guard`: the identifier to bind the lock guard to.
fn identifier(value: Expr) -> syn::Result<Ident> {
    match value {
        Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
            Ok(path.path.get_ident().cloned().expect("checked above"))
        }
        other => Err(syn::Error::new_spanned(
            other,
            "`guard` must be an identifier to bind the lock guard to, e.g. `guard = lock`",
        )),
    }
}

/// The value of `crate`: a path in a string.
fn crate_path(value: Expr) -> syn::Result<Path> {
    let value = string(value, "crate", "\"::redlock_runtime\"")?;
    value.parse::<Path>().map_err(|_| {
        syn::Error::new_spanned(
            &value,
            "`crate` must be a path in a string, e.g. `crate = \"::redlock_runtime\"`",
        )
    })
}

/// Every option, in the order the docs list them.
const OPTIONS: [&str; 14] = [
    "name",
    "timeout",
    "auto_release_time",
    "min_hold",
    "silent",
    "stats_name",
    "stats",
    "client",
    "auto_extend",
    "guard",
    "abort_on_lost",
    "reentrant",
    "permits",
    "crate",
];

/// The options, for an error: "`name`, `timeout`, …".
fn options() -> String {
    OPTIONS.map(|option| format!("`{option}`")).join(", ")
}

/// The option whose name is at most 2 edits from `unknown` (a typo: `timout`), if one is.
fn closest_option(unknown: &str) -> Option<&'static str> {
    OPTIONS
        .into_iter()
        .map(|name| (edits(unknown, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The Levenshtein distance between two short names.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// An integer literal without suffix (its range is checked with the other options).
fn integer(value: Expr, option: &str) -> syn::Result<LitInt> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(value),
            ..
        }) if value.suffix().is_empty() => Ok(value),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{option}` must be a whole number literal, e.g. `{option} = 3`"),
        )),
    }
}

/// A `true` or `false` literal.
fn boolean(value: Expr, option: &str) -> syn::Result<LitBool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(value),
            ..
        }) => Ok(value),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{option}` must be `true` or `false`"),
        )),
    }
}
pub(crate) const TIMEOUT_CHOICES: &str =
    "-1 (skip if locked), 0 (wait forever) or a positive number of seconds (wait up to N s)";
pub(crate) const MIN_HOLD_CHOICES: &str = "a positive number of seconds below 1e9 (the lock is kept at least this long after it is taken)";
pub(crate) const TTL_CHOICES: &str = "a number of seconds from 0.003 (more than the clock-drift allowance) to below 1e9 (the default is 10)";

/// A flag takes no value.
fn flag(input: ParseStream<'_>, name: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        let eq = input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        return Err(syn::Error::new(
            eq.span.join(value.span()).unwrap_or(eq.span),
            format!("`{name}` is a flag and takes no value: write `{name}`, or leave it out"),
        ));
    }
    Ok(())
}

/// Rejects a second occurrence of an option.
fn set_once<T>(slot: &mut Option<T>, value: T, key: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            key,
            format!("duplicate option `{key}`: give each option once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The value after `=`.
fn value_of(input: ParseStream<'_>) -> syn::Result<Expr> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// A string literal (a format string whose captures are plain variables), or any expression
/// other than a literal of another type.
fn text(value: Expr, option: &str) -> syn::Result<Text> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(format),
            ..
        }) => {
            check_captures(&format, option)?;
            Ok(Text::Format(format))
        }
        Expr::Lit(other) => Err(syn::Error::new_spanned(
            other,
            format!(
                "`{option}` must be a string: a literal that may capture variables \
                 (`{option} = \"job:{{id}}\"`) or an expression (`{option} = job.lock_key()`)"
            ),
        )),
        expression => Ok(Text::Expr(expression)),
    }
}

/// Rejects captures that `format!` cannot take (`"{job.id}"`), with the expression form that
/// says the same.
fn check_captures(format: &LitStr, option: &str) -> syn::Result<()> {
    let text = format.value();
    let mut rest = text.as_str();
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
            rest = &after[1..];
            continue;
        }
        if rest[open..].starts_with('}') {
            rest = after;
            continue;
        }
        let Some(close) = after.find('}') else { break };
        let capture = after[..close].split(':').next().unwrap_or_default().trim();
        let plain = capture.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !plain {
            let spec = &after[..close][capture.len()..];
            let template = text.replacen(
                &format!("{{{}}}", &after[..close]),
                &format!("{{{spec}}}"),
                1,
            );
            return Err(syn::Error::new_spanned(
                format,
                format!(
                    "`{option}` can capture plain variables only (`{{id}}`), not `{{{capture}}}`: \
                     write `{option} = format!({template:?}, {capture})`"
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn string(value: Expr, option: &str, example: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Ok(text),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{option}` must be a string literal, e.g. `{option} = {example}`"),
        )),
    }
}

fn seconds(value: Expr, option: &str, choices: &str) -> syn::Result<Seconds> {
    let wrong = |expr: &Expr| {
        syn::Error::new_spanned(
            expr,
            format!("`{option}` must be a number literal: {choices}"),
        )
    };
    let (negative, literal) = match &value {
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => (true, &**expr),
        other => (false, other),
    };
    let magnitude = match literal {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.suffix().is_empty() => int.base10_parse::<f64>().map_err(|_| wrong(&value))?,
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) if float.suffix().is_empty() => {
            float.base10_parse::<f64>().map_err(|_| wrong(&value))?
        }
        _ => return Err(wrong(&value)),
    };
    Ok(Seconds {
        value: if negative { -magnitude } else { magnitude },
        literal: value,
    })
}
