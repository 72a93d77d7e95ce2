//! `#[pgfresh::test]`: reads the attribute's arguments, resolves the migrations and fixture
//! files at expansion time (so that a missing one is a compile error naming the path looked
//! for) and wraps the `async fn` in a plain `#[test]` that hands it to
//! `pgfresh::__private::TestFn`, whose implementations (one per argument form) run it.

use std::path::Path;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, Lit, LitInt, LitStr, Meta, Token};

use crate::{migrate, paths};

/// Every argument the attribute takes, for messages.
const ARGUMENTS: &str = "`migrations = \"dir\"`, `migrations = false`, \
    `migrator = \"path::TO::MIGRATOR\"`, `fixtures(\"name\", …)`, \
    `fixtures(path = \"dir\", scripts(\"name\", …))`, \
    `flavor = \"multi_thread\"` or `flavor = \"current_thread\"`, `worker_threads = N`, \
    `role = \"name\"`";

/// The argument forms the runner takes, for messages.
const FORMS: &str = "`pool: PgPool`, `conn: PoolConnection<Postgres>`, `db: TestDb`, \
    `options: (PgPoolOptions, PgConnectOptions)`, or the two as separate arguments \
    `pool: PgPoolOptions, connect: PgConnectOptions`";

/// What the generated function is marked with.
#[derive(Clone, Copy)]
pub(crate) enum Mark {
    /// `#[test]`: the attribute.
    Test,
    /// Nothing: a plain function the compiler type-checks in any build (rustc drops `#[test]`
    /// functions unchecked outside `--test`), for compile-fail tests of the type errors.
    TypeCheckOnly,
}

/// Expands `#[pgfresh::test(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream, mark: Mark) -> syn::Result<TokenStream> {
    let item: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`#[pgfresh::test]` goes on an `async fn`: write \
             `#[pgfresh::test] async fn my_test(pool: PgPool) { … }`",
        )
    })?;
    check_signature(&item)?;
    let args = Args::parse(args)?;
    args.check(&item)?;
    generate(&item, &args, mark)
}

/// Where the migrations come from.
enum Migrations {
    /// `migrations = "dir"`.
    Dir(LitStr),
    /// `migrations = false`.
    Disabled,
    /// `migrator = "path::TO::MIGRATOR"`.
    Migrator(syn::Path),
}

/// How one fixture was named.
enum FixtureKind {
    /// `fixtures("users")`: `fixtures/users.sql` beside the test file.
    Bare,
    /// `fixtures("../fixtures/users.sql")`: relative to the test file's folder.
    Path,
    /// `fixtures(path = "dir", scripts("users"))`: `dir/users.sql` beside the test file.
    Script(LitStr),
}

/// One fixture file, as written and relative to the test file's folder.
struct SeedFile {
    written: LitStr,
    kind: FixtureKind,
    relative: String,
}

/// The attribute's arguments.
#[derive(Default)]
struct Args {
    /// `migrations` or `migrator`, with the argument (for messages) and its name.
    migrations: Option<(TokenStream, &'static str, Migrations)>,
    /// The `fixtures(...)` groups' files, in order, and the first group (for messages).
    fixtures: Vec<SeedFile>,
    first_fixtures: Option<TokenStream>,
    /// `flavor`: `true` for `"multi_thread"`.
    flavor: Option<(TokenStream, bool)>,
    /// `worker_threads = N`.
    worker_threads: Option<(TokenStream, usize)>,
    /// `role = "name"`.
    role: Option<String>,
}

impl Args {
    fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
        let mut args = Self::default();
        for meta in metas {
            let name = meta
                .path()
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match (name.as_str(), &meta) {
                ("migrations", Meta::NameValue(nv)) => {
                    let migrations = match literal(&nv.value) {
                        Some(Lit::Str(dir)) => Migrations::Dir(dir.clone()),
                        Some(Lit::Bool(b)) if !b.value => Migrations::Disabled,
                        Some(Lit::Bool(b)) => {
                            return Err(syn::Error::new(
                                b.span(),
                                "`migrations = true` is not an option: the crate's `migrations` \
                                 folder is applied by default, so remove the argument, or name \
                                 the folder (`migrations = \"db/migrations\"`), or ask for an \
                                 empty database (`migrations = false`)",
                            ));
                        }
                        _ => return Err(expected(&meta, "migrations")),
                    };
                    args.set_migrations(&meta, "migrations", migrations)?;
                }
                ("migrator", Meta::NameValue(nv)) => {
                    let Some(Lit::Str(path)) = literal(&nv.value) else {
                        return Err(expected(&meta, "migrator"));
                    };
                    let path = path.parse::<syn::Path>().map_err(|_| {
                        syn::Error::new(
                            path.span(),
                            "`migrator` names a `Migrator` static by its path: write e.g. \
                             `migrator = \"crate::MIGRATOR\"`",
                        )
                    })?;
                    args.set_migrations(&meta, "migrator", Migrations::Migrator(path))?;
                }
                ("fixtures", Meta::List(list)) => {
                    args.first_fixtures.get_or_insert_with(|| quote!(#meta));
                    args.fixtures
                        .extend(parse_fixtures.parse2(list.tokens.clone())?);
                }
                ("flavor", Meta::NameValue(nv)) => {
                    let multi = match literal(&nv.value) {
                        Some(Lit::Str(s)) if s.value() == "multi_thread" => true,
                        Some(Lit::Str(s)) if s.value() == "current_thread" => false,
                        _ => return Err(expected(&meta, "flavor")),
                    };
                    if args.flavor.is_some() {
                        return Err(twice(&meta, "flavor"));
                    }
                    args.flavor = Some((quote!(#meta), multi));
                }
                ("worker_threads", Meta::NameValue(nv)) => {
                    let Some(Lit::Int(n)) = literal(&nv.value) else {
                        return Err(expected(&meta, "worker_threads"));
                    };
                    let n = worker_threads(n)?;
                    if args.worker_threads.is_some() {
                        return Err(twice(&meta, "worker_threads"));
                    }
                    args.worker_threads = Some((quote!(#meta), n));
                }
                ("role", Meta::NameValue(nv)) => {
                    let Some(Lit::Str(role)) = literal(&nv.value) else {
                        return Err(expected(&meta, "role"));
                    };
                    if args.role.is_some() {
                        return Err(twice(&meta, "role"));
                    }
                    args.role = Some(role_name(role)?);
                }
                (
                    "migrations" | "migrator" | "fixtures" | "flavor" | "worker_threads" | "role",
                    _,
                ) => {
                    return Err(expected(&meta, &name));
                }
                _ => {
                    let path = meta.path();
                    let written = quote!(#path).to_string().replace(' ', "");
                    let hint = did_you_mean(&written)
                        .map(|known| format!(" (did you mean `{known}`?)"))
                        .unwrap_or_default();
                    return Err(syn::Error::new_spanned(
                        path,
                        format!(
                            "unknown argument `{written}` of `#[pgfresh::test]`{hint}; it takes \
                             {ARGUMENTS}"
                        ),
                    ));
                }
            }
        }
        Ok(args)
    }

    fn set_migrations(
        &mut self,
        meta: &Meta,
        name: &'static str,
        migrations: Migrations,
    ) -> syn::Result<()> {
        match &self.migrations {
            None => {
                self.migrations = Some((quote!(#meta), name, migrations));
                Ok(())
            }
            Some((_, first, _)) if *first == name => Err(twice(meta, name)),
            Some(_) => Err(syn::Error::new_spanned(
                meta,
                "give either `migrations` or `migrator`, not both: `migrations = \"dir\"` embeds \
                 a folder of the crate, `migrator = \"path::TO::MIGRATOR\"` uses a `Migrator` \
                 static you already have",
            )),
        }
    }

    /// The checks that need the function too.
    fn check(&self, item: &ItemFn) -> syn::Result<()> {
        if item.sig.inputs.is_empty() {
            let database_argument = self
                .migrations
                .as_ref()
                .map(|(tokens, name, _)| (tokens, *name))
                .or(self
                    .first_fixtures
                    .as_ref()
                    .map(|tokens| (tokens, "fixtures")));
            if let Some((tokens, name)) = database_argument {
                return Err(syn::Error::new_spanned(
                    tokens,
                    format!(
                        "`{name}` needs a database, and this test takes none: add an argument \
                         such as `pool: PgPool` to `{}`, or remove `{name}`",
                        item.sig.ident
                    ),
                ));
            }
        }
        if let Some((worker_threads, _)) = &self.worker_threads {
            match &self.flavor {
                Some((_, true)) => {}
                Some((_, false)) => {
                    return Err(syn::Error::new_spanned(
                        worker_threads,
                        "`worker_threads` is for the multi-thread runtime, and this test asks for \
                         `flavor = \"current_thread\"`: write `flavor = \"multi_thread\", \
                         worker_threads = N`, or remove `worker_threads`",
                    ));
                }
                None => {
                    return Err(syn::Error::new_spanned(
                        worker_threads,
                        "`worker_threads` is for the multi-thread runtime: add \
                         `flavor = \"multi_thread\"` (the default is `\"current_thread\"`)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The function must be `async` and take at most two arguments; their types are the
/// runner's business (`TestFn`'s message names the forms it takes).
fn check_signature(item: &ItemFn) -> syn::Result<()> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!(
                "`#[pgfresh::test]` goes on an `async fn`: write `async fn {}(…)`",
                sig.ident
            ),
        ));
    }
    if let Some(third) = sig.inputs.iter().nth(2) {
        return Err(syn::Error::new_spanned(
            third,
            format!(
                "`#[pgfresh::test]` passes the database as one argument (or two): take {FORMS}"
            ),
        ));
    }
    Ok(())
}

/// `fixtures("users", "posts")`, `fixtures("../fixtures/users.sql")` or
/// `fixtures(path = "dir", scripts("users", "posts"))`.
fn parse_fixtures(input: ParseStream) -> syn::Result<Vec<SeedFile>> {
    const FORMS: &str = "write `fixtures(\"users\", \"posts\")` (files in `fixtures/` beside \
        the test file), `fixtures(\"../fixtures/users.sql\")` (paths relative to the test file) \
        or `fixtures(path = \"dir\", scripts(\"users\", \"posts\"))`";

    if input.peek(Ident) {
        let key: Ident = input.parse()?;
        if key != "path" {
            return Err(syn::Error::new(
                key.span(),
                format!("unknown `fixtures` argument `{key}`: {FORMS}"),
            ));
        }
        input.parse::<Token![=]>()?;
        let dir: LitStr = input.parse()?;
        let scripts = if input.is_empty() {
            None
        } else {
            input.parse::<Token![,]>()?;
            input.parse::<Ident>().ok().filter(|key| key == "scripts")
        };
        let Some(_) = scripts else {
            return Err(syn::Error::new(
                dir.span(),
                "`path = \"dir\"` names the folder of the files listed after it: write \
                 `fixtures(path = \"dir\", scripts(\"users\", \"posts\"))`",
            ));
        };
        let content;
        syn::parenthesized!(content in input);
        let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(input.error(format!("unexpected after `scripts(…)`: {FORMS}")));
        }
        return Ok(names
            .into_iter()
            .map(|name| SeedFile {
                relative: format!(
                    "{}/{}",
                    dir.value().trim_end_matches('/'),
                    with_sql(&name.value())
                ),
                written: name,
                kind: FixtureKind::Script(dir.clone()),
            })
            .collect());
    }

    let names = Punctuated::<LitStr, Token![,]>::parse_terminated(input)
        .map_err(|e| syn::Error::new(e.span(), FORMS))?;
    let mut fixtures: Vec<SeedFile> = Vec::with_capacity(names.len());
    for name in names {
        let value = name.value();
        let is_path = Path::new(&value).components().count() > 1;
        if let Some(first) = fixtures.first() {
            let first_is_path = matches!(first.kind, FixtureKind::Path);
            if first_is_path != is_path {
                return Err(syn::Error::new(
                    name.span(),
                    format!(
                        "one `fixtures(…)` takes either bare names (`\"users\"`: \
                         `fixtures/users.sql` beside the test file) or paths (`\"../sql/users.sql\"`), \
                         not both: put `\"{value}\"` in a `fixtures(…)` of its own"
                    ),
                ));
            }
        }
        fixtures.push(if is_path {
            SeedFile {
                relative: value,
                written: name,
                kind: FixtureKind::Path,
            }
        } else {
            SeedFile {
                relative: format!("fixtures/{}", with_sql(&value)),
                written: name,
                kind: FixtureKind::Bare,
            }
        });
    }
    Ok(fixtures)
}

/// `name`, with `.sql` added when it has no extension.
fn with_sql(name: &str) -> String {
    if Path::new(name).extension().is_some() {
        name.to_owned()
    } else {
        format!("{name}.sql")
    }
}

/// A literal, looking through the invisible groups a `macro_rules!` fragment makes.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(lit) => Some(&lit.lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn worker_threads(n: &LitInt) -> syn::Result<usize> {
    match n.base10_parse::<usize>() {
        Ok(0) => Err(syn::Error::new(
            n.span(),
            "`worker_threads = 0`: a runtime needs at least one worker thread; write \
             `worker_threads = 1` or more, or remove it (tokio's default: one per core)",
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(syn::Error::new(n.span(), format!("`worker_threads`: {e}"))),
    }
}

/// The name of `role = "name"`, checked as pgfresh checks `PGFRESH_ROLE`.
fn role_name(role: &LitStr) -> syn::Result<String> {
    let name = role.value();
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(syn::Error::new(
            role.span(),
            format!(
                "`role = {name:?}`: expected a role name of lower-case letters, digits and _ \
                 (not starting with a digit or pg_), at most 63 characters, e.g. \
                 `role = \"app_test\"`"
            ),
        ))
    }
}

/// The error for a known argument written in the wrong form.
fn expected(meta: &Meta, name: &str) -> syn::Error {
    let form = match name {
        "migrations" => {
            "`migrations = \"dir\"` (a folder relative to the crate root) or `migrations = false` (an empty database)"
        }
        "migrator" => {
            "`migrator = \"path::TO::MIGRATOR\"` (a `Migrator` static, e.g. `\"crate::MIGRATOR\"`)"
        }
        "fixtures" => {
            "`fixtures(\"users\", \"posts\")` or `fixtures(path = \"dir\", scripts(\"users\", \"posts\"))`"
        }
        "flavor" => "`flavor = \"multi_thread\"` or `flavor = \"current_thread\"`",
        "role" => "`role = \"name\"` (a role that is not a superuser, e.g. `role = \"app_test\"`)",
        _ => "`worker_threads = N` with N >= 1 (and `flavor = \"multi_thread\"`)",
    };
    syn::Error::new_spanned(meta, format!("expected {form}"))
}

fn twice(meta: &Meta, name: &str) -> syn::Error {
    syn::Error::new_spanned(meta, format!("`{name}` is given twice: keep one"))
}

/// The known argument `written` is closest to, when it is a likely typo of one.
fn did_you_mean(written: &str) -> Option<&'static str> {
    [
        "migrations",
        "migrator",
        "fixtures",
        "flavor",
        "worker_threads",
        "role",
    ]
    .into_iter()
    .map(|known| (edit_distance(written, known), known))
    .filter(|(distance, _)| *distance <= 2)
    .min()
    .map(|(_, known)| known)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The generated test.
fn generate(item: &ItemFn, args: &Args, mark: Mark) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let name = &sig.ident;
    let output = &sig.output;

    let (migrator_static, migrator) = if sig.inputs.is_empty() {
        (None, quote!(::core::option::Option::None))
    } else {
        let embedded = match args.migrations.as_ref().map(|(_, _, m)| m) {
            Some(Migrations::Dir(dir)) => Some(migrate::expand(Some(dir))?),
            None => migrate::expand_default_if_present()?,
            Some(Migrations::Disabled | Migrations::Migrator(_)) => None,
        };
        match (embedded, args.migrations.as_ref().map(|(_, _, m)| m)) {
            (Some(tokens), _) => (
                Some(quote! {
                    static MIGRATOR: ::pgfresh::sqlx::migrate::Migrator = #tokens;
                }),
                quote!(::core::option::Option::Some(&MIGRATOR)),
            ),
            (None, Some(Migrations::Migrator(path))) => {
                (None, quote!(::core::option::Option::Some(&#path)))
            }
            (None, _) => (None, quote!(::core::option::Option::None)),
        }
    };

    let fixtures = fixture_tokens(&args.fixtures)?;
    let multi_thread = matches!(args.flavor, Some((_, true)));
    let worker_threads = match args.worker_threads {
        Some((_, n)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let role = match &args.role {
        Some(role) => quote!(::core::option::Option::Some(#role)),
        None => quote!(::core::option::Option::None),
    };
    let placeholders = sig.inputs.iter().map(|_| quote!(_));
    let mark = match mark {
        Mark::Test => quote!(#[::core::prelude::v1::test]),
        Mark::TypeCheckOnly => quote!(#[allow(dead_code)]),
    };
    // The call is where a wrong argument type surfaces (`TestFn`'s message): point at the
    // first argument's type.
    let call_span = match sig.inputs.first() {
        Some(syn::FnArg::Typed(arg)) => arg.ty.span(),
        Some(other) => other.span(),
        None => sig.ident.span(),
    };
    let run = quote_spanned! {call_span=>
        ::pgfresh::__private::TestFn::run_test(f, args)
    };

    Ok(quote! {
        #(#attrs)*
        #mark
        #vis fn #name() #output {
            #sig #block

            #migrator_static

            let args = ::pgfresh::__private::TestArgs {
                path: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                migrator: #migrator,
                fixtures: &[#(#fixtures),*],
                multi_thread: #multi_thread,
                worker_threads: #worker_threads,
                role: #role,
            };
            let f: fn(#(#placeholders),*) -> _ = #name;
            #run
        }
    })
}

/// One `EmbeddedSeedFile` per file. The files are found from the test file's folder and
/// embedded by absolute path, so a missing one is an error here that names it; when the
/// compiler cannot tell where the test file is, `include_str!` resolves the relative path.
fn fixture_tokens(fixtures: &[SeedFile]) -> syn::Result<Vec<TokenStream>> {
    let base = if fixtures.is_empty() {
        None
    } else {
        paths::calling_file_dir()
    };
    fixtures
        .iter()
        .map(|fixture| {
            let (shown, included) = match &base {
                Some(base) => {
                    let absolute = paths::normalize(&base.join(&fixture.relative));
                    if !absolute.is_file() {
                        return Err(missing_fixture(fixture, &absolute));
                    }
                    let included = absolute.to_str().map(str::to_owned).ok_or_else(|| {
                        syn::Error::new(
                            fixture.written.span(),
                            format!("the path `{}` is not UTF-8", absolute.display()),
                        )
                    })?;
                    (paths::for_display(&absolute), included)
                }
                None => (fixture.relative.clone(), fixture.relative.clone()),
            };
            Ok(quote! {
                ::pgfresh::__private::EmbeddedSeedFile {
                    path: #shown,
                    contents: ::core::include_str!(#included),
                }
            })
        })
        .collect()
}

fn missing_fixture(fixture: &SeedFile, absolute: &Path) -> syn::Error {
    let written = fixture.written.value();
    let rule = match &fixture.kind {
        FixtureKind::Bare => format!(
            "a bare name `\"{written}\"` is the file `{}` in the test file's folder",
            fixture.relative
        ),
        FixtureKind::Path => format!("`\"{written}\"` is relative to the test file's folder"),
        FixtureKind::Script(dir) => format!(
            "`path = \"{}\"` is relative to the test file's folder, and a script without an \
             extension gets `.sql`",
            dir.value()
        ),
    };
    let what = if absolute.exists() {
        "is not a file"
    } else {
        "does not exist"
    };
    syn::Error::new(
        fixture.written.span(),
        format!("fixture file `{}` {what} ({rule})", absolute.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_a_close_argument_only() {
        assert_eq!(did_you_mean("migration"), Some("migrations"));
        assert_eq!(did_you_mean("fixture"), Some("fixtures"));
        assert_eq!(did_you_mean("worker_thread"), Some("worker_threads"));
        assert_eq!(did_you_mean("timeout"), None);
    }
}
