//! `pgfresh::migrate!`: sqlx's own expansion (`sqlx_macros_core::migrate`), so the files, the
//! checksums and the `sqlx.toml` handling are sqlx's, with every `::sqlx::…` path re-rooted
//! at `::pgfresh::sqlx::…` so that the caller needs no `sqlx` dependency of its own.

use std::path::Path;

use proc_macro2::{Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use syn::LitStr;

use crate::paths;

/// The migrator of `migrate!()` (sqlx's default folder, `./migrations` unless `sqlx.toml`
/// says otherwise) or `migrate!("dir")`.
pub(crate) fn expand(dir: Option<&LitStr>) -> syn::Result<TokenStream> {
    match dir {
        None => sqlx(None, Span::call_site()),
        Some(dir) => {
            let relative = checked_dir(dir)?;
            sqlx(Some(LitStr::new(&relative, dir.span())), dir.span())
        }
    }
}

/// The migrator of the default folder when there is one, else `None` (the attribute's
/// default: an empty database when the crate has no migrations).
pub(crate) fn expand_default_if_present() -> syn::Result<Option<TokenStream>> {
    let present = paths::manifest_dir().is_ok_and(|root| root.join(DEFAULT_DIR).is_dir());
    match sqlx(None, Span::call_site()) {
        Ok(tokens) => Ok(Some(tokens)),
        // No `./migrations`, and no other folder that `sqlx.toml` names: nothing to apply.
        Err(_) if !present => Ok(None),
        Err(e) => Err(e),
    }
}

/// sqlx's default folder.
const DEFAULT_DIR: &str = "migrations";

/// Checks that `dir` (relative to the crate root) is a folder, and spells it the way
/// `sqlx_macros_core` accepts: it refuses a bare name such as `"migrations"`, so that one
/// becomes `"./migrations"`.
fn checked_dir(dir: &LitStr) -> syn::Result<String> {
    let value = dir.value();
    let path = Path::new(&value);
    if path.is_absolute() {
        return Err(syn::Error::new(
            dir.span(),
            format!(
                "the migrations folder must be relative to the crate root (an absolute path \
                 only works on this machine): write e.g. `\"migrations\"` instead of `\"{value}\"`"
            ),
        ));
    }
    let root = paths::manifest_dir().map_err(|e| syn::Error::new(dir.span(), e))?;
    let absolute = paths::normalize(&root.join(path));
    if !absolute.is_dir() {
        // The folder relative to the crate root (when it lies inside), so that the message
        // reads the same on every machine and in every target directory.
        return Err(syn::Error::new(
            dir.span(),
            format!(
                "no migrations folder `{}`: `\"{value}\"` is relative to the crate root (the \
                 folder of its Cargo.toml); create the folder or name an existing one",
                paths::for_display(&absolute)
            ),
        ));
    }
    let bare = path.parent().is_none_or(|p| p.as_os_str().is_empty());
    Ok(if bare { format!("./{value}") } else { value })
}

/// Runs sqlx's expansion and re-roots its paths; an error becomes a `syn::Error` at `span`.
fn sqlx(dir: Option<LitStr>, span: Span) -> syn::Result<TokenStream> {
    match sqlx_macros_core::migrate::expand(dir) {
        Ok(tokens) => Ok(reroot(tokens)),
        Err(e) => Err(match e.downcast::<syn::Error>() {
            Ok(e) => *e,
            Err(e) => syn::Error::new(span, e),
        }),
    }
}

/// Rewrites every absolute path `::sqlx::…` in `tokens`, groups included, to
/// `::pgfresh::sqlx::…`. A `::sqlx` that continues a path (`a::sqlx`, `<T>::sqlx`) is left as
/// it is.
pub(crate) fn reroot(tokens: TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len() + 8);
    for (i, token) in tokens.iter().enumerate() {
        let starts_absolute_sqlx = matches!(
            (token, tokens.get(i + 1), tokens.get(i + 2)),
            (TokenTree::Punct(a), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(name)))
                if a.as_char() == ':' && a.spacing() == Spacing::Joint
                    && b.as_char() == ':' && name == "sqlx"
        ) && !continues_path(out.last());
        if starts_absolute_sqlx {
            let span = token.span();
            let mut colon = Punct::new(':', Spacing::Joint);
            colon.set_span(span);
            out.push(TokenTree::Punct(colon));
            let mut colon = Punct::new(':', Spacing::Alone);
            colon.set_span(span);
            out.push(TokenTree::Punct(colon));
            out.push(TokenTree::Ident(Ident::new("pgfresh", span)));
        }
        out.push(match token {
            TokenTree::Group(group) => {
                let mut rerooted = Group::new(group.delimiter(), reroot(group.stream()));
                rerooted.set_span(group.span());
                TokenTree::Group(rerooted)
            }
            other => other.clone(),
        });
    }
    out.into_iter().collect()
}

/// Whether a `::` after `previous` continues a path rather than starting one.
fn continues_path(previous: Option<&TokenTree>) -> bool {
    match previous {
        Some(TokenTree::Ident(_)) => true,
        Some(TokenTree::Punct(p)) => p.as_char() == '>',
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;
    use quote::quote;
    use syn::LitStr;

    use super::{checked_dir, reroot};

    #[test]
    fn a_missing_folder_is_named_relative_to_the_crate_root() {
        for (written, shown) in [
            ("no/such/folder", "`no/such/folder`"),
            ("./no/../such", "`such`"),
        ] {
            let e = checked_dir(&LitStr::new(written, Span::call_site())).unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("no migrations folder {shown}: ")),
                "{message}"
            );
            let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
            assert!(!message.contains(&root), "{message}");
        }
    }

    #[test]
    fn reroots_absolute_sqlx_paths_in_groups_too() {
        let tokens = quote! {
            ::sqlx::migrate::Migrator {
                migrations: ::std::borrow::Cow::Borrowed(const { &[::sqlx::migrate::Migration { sql: ::sqlx::SqlStr::from_static(x) }] }),
                other: crate::sqlx::Kept,
                generic: <T>::sqlx,
            }
        };
        let expected = quote! {
            ::pgfresh::sqlx::migrate::Migrator {
                migrations: ::std::borrow::Cow::Borrowed(const { &[::pgfresh::sqlx::migrate::Migration { sql: ::pgfresh::sqlx::SqlStr::from_static(x) }] }),
                other: crate::sqlx::Kept,
                generic: <T>::sqlx,
            }
        };
        assert_eq!(reroot(tokens).to_string(), expected.to_string());
    }
}
