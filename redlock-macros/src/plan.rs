//! The validation step: the arguments and the function's shape checked together, into a plan
//! for the expansion. Every error points at the user's token and lists the valid choices.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{
    Expr, GenericArgument, Ident, ItemFn, LitStr, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::attr::{Args, MIN_HOLD_CHOICES, Seconds, TIMEOUT_CHOICES, TTL_CHOICES, Text};

/// The smallest TTL that leaves validity after the drift allowance (1% + 2 ms).
const MIN_TTL_SECONDS: f64 = 0.003;

/// What `timeout` asks for.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Wait {
    Skip,
    Forever,
    Nanos(u64),
}

/// How the function is run, which decides how the lock is taken and where the body is.
pub(crate) enum Shape {
    /// `async fn`: the function's own block.
    Async,
    /// A plain `fn`: through the blocking API.
    Blocking,
    /// A plain `fn` whose last expression is `async move { … }`, bare (`-> impl Future`) or
    /// in `Box::pin(…)` (as `#[async_trait]` writes it): the async block is wrapped.
    TailAsync,
}

/// What to return when the lock is not acquired (the return-type table of `#[redlock]`'s docs).
/// Whether the return type is a `Result` is decided by the compiler, aliases resolved (see
/// `__private::Returns`); the spelling decides only for a type with `impl Trait` in it, which
/// the expansion cannot name.
pub(crate) enum Failure {
    /// Not `silent`, a `timeout` that can end: the error, converted; a type that is not a
    /// `Result` is a compile error at the `timeout`.
    Fail(Span),
    /// Not `silent`, waiting forever: a `Result` gets the error; another type cannot, and only
    /// a configuration error can get here (see `__private::unrecoverable`).
    FailOrPanic,
    /// `silent`: a `Result` gets `Ok(default)` when held elsewhere and the error otherwise;
    /// another type its default.
    Skip(Span),
}

/// Everything the expansion needs, checked.
pub(crate) struct Plan {
    pub(crate) krate: TokenStream,
    pub(crate) name: Text,
    pub(crate) wait: Wait,
    /// `None`: the runtime's default.
    pub(crate) ttl_nanos: Option<u64>,
    /// `None`: no minimum hold.
    pub(crate) min_hold_nanos: Option<u64>,
    pub(crate) stats_name: Option<Text>,
    pub(crate) client: Option<Expr>,
    pub(crate) auto_extend: bool,
    pub(crate) stats: bool,
    pub(crate) guard: Option<Ident>,
    /// The span of `abort_on_lost`, if given.
    pub(crate) abort_on_lost: Option<Span>,
    pub(crate) reentrant: bool,
    /// How many holders at once: 1 (a lock) or a semaphore's permits.
    pub(crate) permits: usize,
    pub(crate) failure: Failure,
    pub(crate) shape: Shape,
    /// The type of the body's value, when it can be written in a `let` (not `impl Trait`).
    pub(crate) body_type: Option<Type>,
    /// Whether the return type is spelled `…Result<…>`: used only when `body_type` is `None`.
    pub(crate) spelled_result: bool,
}

/// Collects errors so that one compile shows them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value, or else `fallback` with the error kept.
    fn or<T>(&mut self, result: syn::Result<T>, fallback: T) -> T {
        result.unwrap_or_else(|error| {
            self.push(error);
            fallback
        })
    }
}

impl Plan {
    pub(crate) fn new(args: Args, function: &ItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let name = errors.or(
            name_of(args.name),
            Text::Format(LitStr::new("", Span::call_site())),
        );
        if let Some(Text::Format(stats_name)) = &args.stats_name
            && stats_name.value().is_empty()
        {
            errors.push(syn::Error::new_spanned(
                stats_name,
                "`stats_name` must not be empty; leave it out to use the lock name",
            ));
        }
        let wait = args.timeout.as_ref().map_or(Ok(Wait::Forever), wait_of);
        let wait = errors.or(wait, Wait::Forever);
        let ttl_nanos = errors.or(
            args.auto_release_time.as_ref().map(ttl_of).transpose(),
            None,
        );
        let min_hold_nanos = errors.or(args.min_hold.as_ref().map(min_hold_of).transpose(), None);
        let permits = errors.or(args.permits.as_ref().map_or(Ok(1), permits_of), 1);
        if let (Some(reentrant), true) = (args.reentrant, permits > 1) {
            errors.push(syn::Error::new(
                reentrant,
                "`reentrant` cannot go with `permits`: a semaphore is not re-entrant (a task \
                 that holds a permit and calls again takes another permit); remove one of them",
            ));
        }
        if let Some(constness) = &function.sig.constness {
            errors.push(syn::Error::new_spanned(constness, "`#[redlock]` cannot wrap a `const fn`: taking a lock needs I/O at run time; remove `const`"));
        }
        let (shape, output) = errors.or(shape_of(function), (Shape::Async, None));
        if let Some(abort_on_lost) = args.abort_on_lost
            && matches!(shape, Shape::Blocking)
        {
            errors.push(syn::Error::new(abort_on_lost, "`abort_on_lost` needs an async body, which can be dropped at an `.await`: make the function `async`"));
        }
        let failure = match (args.silent, &args.timeout) {
            (Some(silent), _) => Failure::Skip(silent),
            (None, Some(timeout)) if wait != Wait::Forever => {
                Failure::Fail(syn::spanned::Spanned::span(&timeout.literal))
            }
            (None, _) => Failure::FailOrPanic,
        };
        if let Some(error) = errors.0 {
            return Err(error);
        }
        let body_type = match &output {
            None => Some(syn::parse_quote!(())),
            Some(ty) if mentions_impl_trait(ty) => None,
            Some(ty) => Some(ty.clone()),
        };
        Ok(Self {
            krate: args.krate.map_or_else(
                || quote!(::configurable_redlock),
                |path| path.to_token_stream(),
            ),
            name,
            wait,
            ttl_nanos,
            min_hold_nanos,
            stats_name: args.stats_name,
            client: args.client,
            auto_extend: args.auto_extend.is_none_or(|value| value.value),
            stats: args.stats.is_none_or(|value| value.value),
            guard: args.guard,
            abort_on_lost: args.abort_on_lost,
            reentrant: args.reentrant.is_some(),
            permits,
            failure,
            shape,
            spelled_result: output.as_ref().is_some_and(is_result),
            body_type,
        })
    }
}

/// The lock's name: given, and not empty.
fn name_of(name: Option<Text>) -> syn::Result<Text> {
    match name {
        Some(Text::Format(name)) if name.value().is_empty() => Err(syn::Error::new_spanned(
            &name,
            "`name` must not be empty: it names the lock key `redlock:ConfigurableLock.<name>`",
        )),
        Some(name) => Ok(name),
        None => Err(syn::Error::new(
            Span::call_site(),
            "missing `name`: write `#[redlock(name = \"…\")]`; it may capture arguments, e.g. `name = \"job:{id}\"`, or be an expression, e.g. `name = job.lock_key()`",
        )),
    }
}

fn wait_of(timeout: &Seconds) -> syn::Result<Wait> {
    let value = timeout.value;
    if value == -1.0 {
        Ok(Wait::Skip)
    } else if value == 0.0 {
        Ok(Wait::Forever)
    } else if value > 0.0 && value.is_finite() && value < 1e9 {
        Ok(Wait::Nanos((value * 1e9).round() as u64))
    } else {
        Err(syn::Error::new_spanned(
            &timeout.literal,
            format!("`timeout` must be {TIMEOUT_CHOICES}"),
        ))
    }
}

fn ttl_of(ttl: &Seconds) -> syn::Result<u64> {
    let value = ttl.value;
    if (MIN_TTL_SECONDS..1e9).contains(&value) {
        Ok((value * 1e9).round() as u64)
    } else {
        Err(syn::Error::new_spanned(
            &ttl.literal,
            format!("`auto_release_time` must be {TTL_CHOICES}"),
        ))
    }
}

fn min_hold_of(min_hold: &Seconds) -> syn::Result<u64> {
    let value = min_hold.value;
    if value > 0.0 && value < 1e9 {
        Ok((value * 1e9).round() as u64)
    } else {
        Err(syn::Error::new_spanned(
            &min_hold.literal,
            format!("`min_hold` must be {MIN_HOLD_CHOICES}"),
        ))
    }
}

fn permits_of(permits: &syn::LitInt) -> syn::Result<usize> {
    match permits.base10_parse::<usize>() {
        Ok(value) if (1..=64).contains(&value) => Ok(value),
        _ => Err(syn::Error::new_spanned(
            permits,
            "`permits` must be from 1 to 64: how many holders may run the body at once (1: a lock)",
        )),
    }
}

/// How the function runs, and the type its body produces (`None` for `()`).
fn shape_of(function: &ItemFn) -> syn::Result<(Shape, Option<Type>)> {
    let declared = match &function.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    if function.sig.asyncness.is_some() {
        return Ok((Shape::Async, declared));
    }
    let future_output = declared.as_ref().and_then(future_output);
    if tail_async(function).is_some() {
        let output = future_output.ok_or_else(|| {
            syn::Error::new_spanned(
                &function.sig.output,
                "`#[redlock]` cannot see the output of this future: write the return type as `impl Future<Output = T>`",
            )
        })?;
        let output = (!is_unit(&output)).then_some(output);
        return Ok((Shape::TailAsync, output));
    }
    if future_output.is_some() {
        return Err(syn::Error::new_spanned(
            &function.sig.output,
            "`#[redlock]` wraps `async fn`s, plain `fn`s, and `fn`s that end in an `async move { … }` block; \
             this one returns a future built elsewhere: make it an `async fn`",
        ));
    }
    Ok((Shape::Blocking, declared))
}

/// The function's last expression if it is `async { … }` or `Box::pin(async { … })`.
pub(crate) fn tail_async(function: &ItemFn) -> Option<&syn::ExprAsync> {
    match function.block.stmts.last()? {
        Stmt::Expr(expr, None) => async_block(expr),
        _ => None,
    }
}

/// `expr` itself if it is an async block, or the async block inside `Box::pin(…)`.
pub(crate) fn async_block(expr: &Expr) -> Option<&syn::ExprAsync> {
    match expr {
        Expr::Async(block) => Some(block),
        Expr::Call(call) if call.args.len() == 1 && is_box_pin(&call.func) => {
            async_block(&call.args[0])
        }
        _ => None,
    }
}

fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else { return false };
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segments.ends_with(&["Box".to_owned(), "pin".to_owned()])
}

/// The `Output = T` of a `Future` bound anywhere in `ty` (`impl Future<Output = T>`,
/// `Pin<Box<dyn Future<Output = T> + Send + 'a>>`).
fn future_output(ty: &Type) -> Option<Type> {
    let bounds = match ty {
        Type::ImplTrait(bounds) => &bounds.bounds,
        Type::TraitObject(bounds) => &bounds.bounds,
        Type::Paren(inner) => return future_output(&inner.elem),
        Type::Path(path) => {
            let last = path.path.segments.last()?;
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            return args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(inner) => future_output(inner),
                _ => None,
            });
        }
        _ => return None,
    };
    bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}

/// Whether the type is spelled `…Result<…>` (`Result`, `io::Result`, `anyhow::Result`…).
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == "Result")
        }
        Type::Paren(inner) => is_result(&inner.elem),
        Type::Group(inner) => is_result(&inner.elem),
        _ => false,
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// `impl Trait` types cannot annotate a `let`.
fn mentions_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .to_string()
        .split_whitespace()
        .any(|word| word == "impl")
}
