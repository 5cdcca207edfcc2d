//! Code generation: the function re-emitted with its own attributes, signature and braces, and
//! its body run only under the lock, through one or two calls into the runtime's `__private`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Block, Expr, ItemFn, Stmt};

use crate::{
    attr::{Args, Text},
    plan::{Failure, Plan, Shape, Wait},
};

/// `#[redlock(attr)] item`, or `item` as written plus the errors when something is wrong.
pub(crate) fn redlock(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new_spanned(
                &item,
                "`#[redlock]` goes on a function with a body (`fn`, `async fn`, or a method)",
            );
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    match syn::parse2::<Args>(attr).and_then(|args| Plan::new(args, &function)) {
        Ok(plan) => expand(&plan, function),
        Err(error) => with_error(function, &error),
    }
}

/// The function as written, with the errors as its first statements: the rest of the crate
/// (and the IDE) keep seeing the function while the errors point at the attribute's tokens.
fn with_error(mut function: ItemFn, error: &syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    let errors: Block = syn::parse_quote!({ #errors });
    function.block.stmts.splice(0..0, errors.stmts);
    function.into_token_stream()
}

fn expand(plan: &Plan, mut function: ItemFn) -> TokenStream {
    match plan.shape {
        Shape::Async | Shape::Blocking => {
            let body = wrap(plan, &function.block);
            function.block.stmts = body;
        }
        Shape::TailAsync => {
            let Some(Stmt::Expr(tail, None)) = function.block.stmts.last_mut() else {
                unreachable!("the plan checked the tail async block");
            };
            let inner = innermost_async(tail);
            let body = wrap(plan, &inner.block);
            inner.block.stmts = body;
        }
    }
    function.into_token_stream()
}

fn innermost_async(expr: &mut Expr) -> &mut syn::ExprAsync {
    match expr {
        Expr::Async(block) => block,
        Expr::Call(call) => innermost_async(&mut call.args[0]),
        _ => unreachable!("the plan checked the tail async block"),
    }
}

/// The statements that replace `block`: take the lock or return the failure value, run the
/// original block (its own scope and braces), release, return the block's value.
fn wrap(plan: &Plan, block: &Block) -> Vec<Stmt> {
    let krate = &plan.krate;
    let private = quote!(#krate::__private);
    let client = match &plan.client {
        Some(client) => quote_spanned!(client.span_or_call_site() => #private::client(&(#client))),
        None => quote!(#private::default_client()),
    };
    let spec = spec(plan, &private);
    let blocking = matches!(plan.shape, Shape::Blocking);
    let (acquire, release) = if blocking {
        (
            quote!(#private::acquire_blocking(#client, #spec)),
            quote!(#private::release_blocking(__redlock_guard)),
        )
    } else {
        (
            quote!(#private::acquire(#client, #spec).await),
            quote!(#private::release(__redlock_guard).await),
        )
    };
    let on_failure = on_failure(plan, &private);
    let bind_guard = plan
        .guard
        .as_ref()
        .map(|guard| quote!(let #guard = &__redlock_guard;));
    let annotation = plan.body_type.as_ref().map(|ty| quote!(: #ty));
    let run_body = run_body(plan, block, &private);
    let body = quote! {
        let __redlock_guard = match #acquire {
            ::core::result::Result::Ok(__redlock_guard) => __redlock_guard,
            ::core::result::Result::Err(__redlock_error) => return #on_failure,
        };
        #bind_guard
        // A body that diverges (`panic!`, `loop {}`) is fine as written; only the wrapping
        // makes it a sub-expression.
        #[allow(clippy::diverging_sub_expression)]
        let __redlock_result #annotation = #run_body;
        #[allow(unreachable_code)]
        #release;
        __redlock_result
    };
    syn::parse2::<Block>(quote!({ #body }))
        .expect("the expansion is a valid block")
        .stmts
}

/// The `LockSpec` of the request: the attribute's options as the runtime takes them.
fn spec(plan: &Plan, private: &TokenStream) -> TokenStream {
    let krate = &plan.krate;
    let name = text(&plan.name);
    let timeout = match plan.wait {
        Wait::Skip => quote!(#private::Skip),
        Wait::Forever => quote!(#private::Forever),
        Wait::Nanos(nanos) => quote!(#private::After(::core::time::Duration::from_nanos(#nanos))),
    };
    // Left out, the runtime's own default: one place decides it.
    let ttl = match plan.ttl_nanos {
        Some(nanos) => quote!(::core::time::Duration::from_nanos(#nanos)),
        None => quote!(#krate::DEFAULT_AUTO_RELEASE_TIME),
    };
    let stats_name = match (&plan.stats_name, &plan.name) {
        (Some(stats_name), _) => {
            let stats_name = text(stats_name);
            quote!(::core::option::Option::Some(#stats_name))
        }
        // A name made per call (`"report:{tick}"`) counts its waiters under its template: a
        // stats name keeps its keys in Redis for good, one per id would pile up.
        (None, Text::Format(format)) if captures(&format.value()) => {
            let template = format.value();
            quote!(::core::option::Option::Some(::std::string::String::from(#template)))
        }
        (None, _) => quote!(::core::option::Option::None),
    };
    let (auto_extend, stats, reentrant) = (plan.auto_extend, plan.stats, plan.reentrant);
    let min_hold = plan.min_hold_nanos.unwrap_or(0);
    let permits = plan.permits;
    quote! {
        #private::LockSpec {
            name: #name,
            timeout: #timeout,
            auto_release_time: #ttl,
            stats_name: #stats_name,
            auto_extend: #auto_extend,
            stats: #stats,
            reentrant: #reentrant,
            min_hold: ::core::time::Duration::from_nanos(#min_hold),
            permits: #permits,
        }
    }
}

/// What the function returns when the lock is not acquired (`__redlock_error`). The calls
/// carry the span of `silent` or `timeout`, so that a return type that cannot take the
/// failure is reported there.
fn on_failure(plan: &Plan, private: &TokenStream) -> TokenStream {
    match (&plan.failure, &plan.body_type) {
        (Failure::Fail(span), _) => respan(quote!(#private::fail(__redlock_error)), *span),
        (Failure::FailOrPanic, Some(ty)) => quote!({
            // One of the two serves: which one is the point.
            #[allow(unused_imports)]
            use #private::{ReturnsOther as _, ReturnsResult as _};
            (&#private::Returns::<#ty>::NEW).forever_failure(__redlock_error)
        }),
        (Failure::Skip(span), Some(ty)) => respan(
            quote!({
                #[allow(unused_imports)]
                use #private::{SilentOther as _, SilentResult as _};
                (&#private::Returns::<#ty>::NEW).silent_failure(__redlock_error)
            }),
            *span,
        ),
        // A type with `impl Trait` in it cannot be named here: its spelling decides.
        (Failure::FailOrPanic, None) if plan.spelled_result => {
            quote!(#private::fail(__redlock_error))
        }
        (Failure::FailOrPanic, None) => quote!(#private::unrecoverable(__redlock_error)),
        (Failure::Skip(span), None) if plan.spelled_result => {
            respan(quote!(#private::skip_or_fail(__redlock_error)), *span)
        }
        (Failure::Skip(span), None) => respan(quote!(#private::skip(__redlock_error)), *span),
    }
}

/// The body as the guard runs it: as written, or raced against the loss of the lock
/// (`abort_on_lost`).
fn run_body(plan: &Plan, block: &Block, private: &TokenStream) -> TokenStream {
    let Some(span) = plan.abort_on_lost else {
        return block.to_token_stream();
    };
    // Named with the return type and spanned at `abort_on_lost`, so that a type that is not
    // a `Result` is reported once, there.
    let returns = plan.body_type.as_ref().map(|ty| quote!(::<#ty, _>));
    let abort_on_lost = respan(
        quote!(#private::abort_on_lost #returns(&__redlock_guard, __redlock_body).await),
        span,
    );
    quote!({
        let __redlock_body = async #block;
        #abort_on_lost
    })
}

/// `tokens` with every span set to `span`.
/// Whether a format string captures anything (`{id}`, `{}`), beyond escaped braces (`{{`).
fn captures(format: &str) -> bool {
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            rest = &rest[open + 2..];
        } else {
            return true;
        }
    }
    false
}

/// The `String` of a `name` or `stats_name`: the format string's, or the expression's
/// `Display`, evaluated at each call.
fn text(text: &Text) -> TokenStream {
    match text {
        Text::Format(format) => quote!(::std::format!(#format)),
        Text::Expr(expr) => quote!(::std::string::ToString::to_string(&(#expr))),
    }
}

fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            }
            token.set_span(span);
            token
        })
        .collect()
}

trait SpanOrCallSite {
    fn span_or_call_site(&self) -> proc_macro2::Span;
}

impl SpanOrCallSite for Expr {
    /// The first token's span: enough for `quote_spanned!` to blame the user's expression.
    fn span_or_call_site(&self) -> proc_macro2::Span {
        self.to_token_stream()
            .into_iter()
            .next()
            .map_or_else(proc_macro2::Span::call_site, |token| token.span())
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::redlock;

    fn expand(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        redlock(attr, item).to_string()
    }

    #[test]
    fn an_async_fn_calls_acquire_then_release() {
        let out = expand(
            quote!(name = "job:{id}", timeout = -1, silent),
            quote!(
                async fn job(id: u64) {
                    work(id).await
                }
            ),
        );
        assert!(
            out.contains(":: configurable_redlock :: __private :: acquire ("),
            "{out}"
        );
        assert!(
            out.contains(":: configurable_redlock :: __private :: Skip"),
            "{out}"
        );
        // Decided by type: `()` is not a `Result`, so `silent` returns its default.
        assert!(
            out.contains(
                "__private :: Returns :: < () > :: NEW) . silent_failure (__redlock_error)"
            ),
            "{out}"
        );
        assert!(
            out.contains("__private :: release (__redlock_guard) . await"),
            "{out}"
        );
        assert!(out.contains(":: std :: format ! (\"job:{id}\")"), "{out}");
    }

    #[test]
    fn a_plain_fn_goes_through_the_blocking_api() {
        let out = expand(
            quote!(name = "a"),
            quote!(
                fn job() -> u32 {
                    1
                }
            ),
        );
        assert!(out.contains("__private :: acquire_blocking ("), "{out}");
        assert!(
            out.contains(
                "__private :: Returns :: < u32 > :: NEW) . forever_failure (__redlock_error)"
            ),
            "{out}"
        );
        assert!(!out.contains(". await"), "{out}");
    }

    #[test]
    fn wrong_arguments_keep_the_function_and_report_every_error() {
        let out = expand(
            quote!(timeout = -2, auto_release_time = 0),
            quote!(
                fn job() {}
            ),
        );
        assert!(out.starts_with("fn job ()"), "{out}");
        assert!(out.contains("missing `name`"), "{out}");
        assert!(out.contains("`timeout` must be"), "{out}");
        assert!(out.contains("`auto_release_time` must be"), "{out}");
    }

    #[test]
    fn the_tail_async_block_of_async_trait_is_wrapped() {
        let out = expand(
            quote!(name = "a"),
            quote!(
                fn job<'a>(
                    &'a self,
                ) -> Pin<Box<dyn Future<Output = Result<u8, Error>> + Send + 'a>> {
                    Box::pin(async move { Ok(1) })
                }
            ),
        );
        assert!(
            out.contains("Box :: pin (async move { let __redlock_guard"),
            "{out}"
        );
        assert!(
            out.contains("Returns :: < Result < u8 , Error > > :: NEW) . forever_failure"),
            "{out}"
        );
    }
}
